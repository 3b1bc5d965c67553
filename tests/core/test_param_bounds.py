"""A param's declared range at its ends: the bounds themselves are accepted, the nearest values
beyond them refused, through Param.convert, --set and an app file's config (with the path)."""
import json
import math

import pytest

from graphflow import Param
from graphflow.loader import AppInvalid, load_app

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("kind, low, high", [(float, 0.0, 1.0), (int, 0, 100), (float, -2.5, 2.5)])
def test_both_bounds_are_accepted_and_the_nearest_values_beyond_refused(kind, low, high):
    param = Param(kind, low, "", range=(low, high))
    assert param.convert(low) == low and param.convert(high) == high
    above = math.nextafter(high, math.inf) if kind is float else high + 1
    below = math.nextafter(low, -math.inf) if kind is float else low - 1
    for value in (above, below):
        with pytest.raises(ValueError, match=rf"expected a value in \[{low}, {high}\], got {value!r}"):
            param.convert(value)


def test_an_upper_bound_alone_is_enforced():
    param = Param(float, 0.0, "", range=(None, 10.0))
    assert param.convert(10.0) == 10.0 and param.convert(-1e300) == -1e300
    with pytest.raises(ValueError, match=r"expected a value <= 10.0, got 10.000000000000002"):
        param.convert(math.nextafter(10.0, math.inf))


def test_a_lower_bound_alone_is_said_as_such():
    param = Param(int, 8, "", range=(1, None))
    assert param.convert(1) == 1
    with pytest.raises(ValueError, match=r"^expected a value >= 1, got 0$"):
        param.convert(0)


def app_file(tmp_path, quality=None):
    config = {"writer": {"w": {"folder": str(tmp_path / "out")}}}
    if quality is not None:
        config["writer"]["w"]["jpeg_quality"] = quality
    data = {"name": "bounds", "modules": ["viz"],
            "graph": {"nodes": [{"name": "writer", "components": [{"name": "w", "type": "viz.ImageWriter"}]}]},
            "config": config}
    path = tmp_path / "bounds.app.json"
    path.write_text(json.dumps(data))
    return path


def test_the_upper_bound_through_set_and_the_app_file(tmp_path):
    # viz.ImageWriter's jpeg_quality is declared with range (0, 100).
    spec = load_app(app_file(tmp_path), sets=["writer/w/jpeg_quality=100"])
    assert spec.params_of("writer/w")["jpeg_quality"] == 100
    with pytest.raises(AppInvalid) as refused:
        load_app(app_file(tmp_path), sets=["writer/w/jpeg_quality=101"])
    assert any("jpeg_quality" in str(e) and "[0, 100]" in str(e) for e in refused.value.errors)
    assert load_app(app_file(tmp_path, 100)).params_of("writer/w")["jpeg_quality"] == 100
    with pytest.raises(AppInvalid) as refused:
        load_app(app_file(tmp_path, 101))
    assert any("$.config.writer.w.jpeg_quality" in str(e) and "[0, 100]" in str(e) for e in refused.value.errors)
