"""The API as plain functions over an app (no server, no sockets): what the routes answer."""
from __future__ import annotations

import math

import pytest

from graphflow.viewer.api import Api, ApiError, parse_json, query_int

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def api(viewer_target):
    from graphflow.app import App

    return Api(App.load(viewer_target.app, sets=viewer_target.sets))


def test_graph_and_config_of_an_app_that_has_not_run(api, viewer_target):
    graph = api.graph()
    assert {n["name"] for n in graph["nodes"]} >= {"camera", "pose", "features"}
    assert any(e["source"] == viewer_target.image for e in graph["edges"])
    node, comp, name = viewer_target.param.split("/")
    param = api.config()["components"][f"{node}/{comp}"]["params"][name]
    assert param["range"] == [0.0, 1.0] or tuple(param["range"]) == (0.0, 1.0)


def test_messages_before_anything_was_published_are_404(api, viewer_target):
    for call in (lambda: api.message(viewer_target.image), lambda: api.image(viewer_target.image),
                 lambda: api.heatmap(viewer_target.tensor, viewer_target.tensor_path)):
        with pytest.raises(ApiError) as info:
            call()
        assert info.value.status == 404 and "has not published yet" in info.value.message
    with pytest.raises(ApiError) as info:
        api.message("camera/source/imag")
    assert info.value.status == 404 and "did you mean 'camera/source/image'" in info.value.message


@pytest.mark.parametrize("value, words", [
    (math.nan, "'nan' is not a finite number"), (math.inf, "'inf' is not a finite number"),
    ([0.5, -math.inf], "[1]: '-inf' is not a finite number"), (1 << 64, "out of the 64-bit range"),
    ("0.7", "expected float"), (None, "expected float, got null"),
])
def test_set_config_refuses_what_no_param_can_hold_and_applies_nothing(api, viewer_target, value, words):
    """NaN passes a range check (every comparison with it is false): it must be refused first."""
    before = api.config()["config"]
    with pytest.raises(ApiError) as info:
        api.set_config({viewer_target.param: value, "math/scale/gain": 3.0})
    assert info.value.status == 400 and words in info.value.message, info.value.message
    assert info.value.extra["errors"][0]["path"] == viewer_target.param
    assert api.config()["config"] == before  # the valid gain change was not applied either


def test_period_params_that_are_no_number_are_refused(api):
    for period in ("NaNHz", math.inf, math.nan):
        with pytest.raises(ApiError) as info:
            api.set_config({"camera/source/tick_period": period})
        assert info.value.status == 400 and "camera/source/tick_period" in info.value.message


def test_strict_json_and_query_integers():
    assert parse_json(b'{"a": [1, 2.5, -9223372036854775808, "NaN"]}') == {"a": [1, 2.5, -(1 << 63), "NaN"]}
    for raw, words in ((b'{"a": NaN}', '$["a"]: NaN'), (b'[1, [Infinity]]', "$[1][0]: Infinity"),
                       (b'{"a": 9223372036854775808}', "64-bit integer range"), (b"\xff", "malformed JSON"),
                       (b"[" * 100000, "nested too deeply")):
        with pytest.raises(ApiError) as info:
            parse_json(raw)
        assert info.value.status == 400 and words in info.value.message
    assert query_int({"index": "-3"}, "index", 0) == -3 and query_int({}, "index", 7) == 7
    for text in ("abc", "1.5", "", "²", "9" * 20):
        with pytest.raises(ApiError):
            query_int({"index": text}, "index", 0)
