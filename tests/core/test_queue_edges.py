"""An edge's "queue" in an app file overrides the target input's declared queue (size, policy),
for that edge only, and takes effect: a slow sink behind a "latest" queue of 3 drops, the same
sink with its declared "block" queue loses nothing. Sizes at the schema's minimum (1) and below."""
import json

import pytest

from graphflow.app import App
from graphflow.loader import AppInvalid, load_app

from . import testpack

pytestmark = pytest.mark.timeout(60)
COUNT = 30


def app_file(tmp_path, queue=None, name="t"):
    edge = {"source": "a/src/number", "target": "b/sink/number"}
    if queue is not None:
        edge["queue"] = queue
    data = {"name": name, "modules": [str(testpack.__file__)],
            "graph": {"nodes": [{"name": "a", "components": [{"name": "src", "type": "testpack.Source"}]},
                                {"name": "b", "components": [{"name": "sink", "type": "testpack.Collect"}]}],
                      "edges": [edge]},
            "config": {"a": {"src": {"count": COUNT, "tick_period": "0ms"}}, "b": {"sink": {"work_s": 0.02}}}}
    path = tmp_path / f"{name}.app.json"
    path.write_text(json.dumps(data))
    return path


def run(path):
    app = App(load_app(path), workers=2)
    app.run(duration=30)
    assert app.failure is None
    return app, app.component("b/sink")


def test_the_declared_queue_applies_without_an_edge_setting(tmp_path):
    app, sink = run(app_file(tmp_path))
    rx = sink.inputs["number"]
    assert (rx.queue_size, rx.policy) == (4, "block")  # testpack.Collect's declaration
    assert sink.values == [float(v) for v in range(COUNT)] and rx.dropped == 0


def test_an_edge_queue_overrides_size_and_policy_and_takes_effect(tmp_path):
    app, sink = run(app_file(tmp_path, {"size": 3, "policy": "latest"}))
    rx = sink.inputs["number"]
    assert (rx.queue_size, rx.policy) == (3, "latest")
    # The source outruns the 20 ms sink: the oldest queued numbers are dropped, the last one stays.
    assert rx.dropped > 0 and len(sink.values) == COUNT - rx.dropped
    assert sink.values[-1] == COUNT - 1 and sink.values == sorted(sink.values)
    assert app.report()["channels"]["a/src/number"]["drops"] == rx.dropped


def test_an_edge_queue_with_only_a_size_keeps_the_declared_policy(tmp_path):
    app, sink = run(app_file(tmp_path, {"size": 1}))
    rx = sink.inputs["number"]
    assert (rx.queue_size, rx.policy) == (1, "block")  # size 1, the schema's minimum, is accepted
    assert sink.values == [float(v) for v in range(COUNT)] and rx.dropped == 0


def test_an_edge_queue_with_only_a_policy_keeps_the_declared_size(tmp_path):
    app, sink = run(app_file(tmp_path, {"policy": "reject"}))
    rx = sink.inputs["number"]
    assert (rx.queue_size, rx.policy) == (4, "reject")
    # "reject" keeps the oldest: the first numbers arrive, later ones are refused while it is full.
    assert rx.dropped > 0 and sink.values[:4] == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("queue, problem", [({"size": 0}, "size"), ({"policy": "newest"}, "policy"),
                                            ({"depth": 3}, "depth")])
def test_a_bad_edge_queue_is_refused_with_its_json_path(tmp_path, queue, problem):
    with pytest.raises(AppInvalid) as refused:
        load_app(app_file(tmp_path, queue))
    errors = [str(e) for e in refused.value.errors]
    assert any("$.graph.edges[0]" in e and problem in e for e in errors), errors
