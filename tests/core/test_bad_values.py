"""Values that used to pass validation and then kill a worker, tracebacks instead of errors, and
graphs with cycles: each refused at validation, one line with the file and JSON path."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from graphflow.loader import AppInvalid, load_app

from .test_validation import GOOD, write

REPO = Path(__file__).resolve().parents[2]


def refused(tmp_path, mutate=None, sets=()) -> list[str]:
    data = copy.deepcopy(GOOD)
    if mutate:
        mutate(data)
    path = write(tmp_path, json.dumps(data))  # json.dumps writes NaN and Infinity as Python's json reads them
    with pytest.raises(AppInvalid) as info:
        load_app(path, sets=sets)
    return [str(e) for e in info.value.errors]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("period", ["NaNHz", "1e-400s", "1e309Hz", "1e309s", "-5ms", "0Hz", "4e7s",
                                    float("nan"), float("inf"), 10 ** 400])
def test_bad_tick_periods_are_refused_in_the_app_file_and_on_the_command_line(tmp_path, period):
    def mutate(data):
        data["config"]["src"] = {"counter": {"tick_period": period}}
    (error,) = refused(tmp_path, mutate)
    assert "$.config.src.counter.tick_period: tick_period:" in error
    if not isinstance(period, (float, int)):
        (error,) = refused(tmp_path, sets=[f"src/counter/tick_period={period}"])
        assert f"<command line>: --set src/counter/tick_period={period}: tick_period:" in error


@pytest.mark.timeout(30)
@pytest.mark.parametrize("size", [2.0, 1e20, 10 ** 7, 0, True])
def test_bad_edge_queue_sizes_are_refused(tmp_path, size):
    def mutate(data):
        data["graph"]["edges"][0]["queue"] = {"size": size, "policy": "block"}
    (error,) = refused(tmp_path, mutate)
    assert "$.graph.edges[0].queue.size" in error


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 10 ** 400])
def test_non_finite_numbers_are_refused_for_a_ranged_param(tmp_path, value):
    def mutate(data):
        data["config"]["gain"] = {"scale": {"gain": value}}
    (error,) = refused(tmp_path, mutate)
    assert "$.config.gain.scale.gain: gain: expected a finite number" in error


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text", ["nan", "NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused_on_the_command_line(tmp_path, text):
    (error,) = refused(tmp_path, sets=[f"gain/scale/gain={text}"])
    assert f"--set gain/scale/gain={text}: gain:" in error


@pytest.mark.timeout(30)
def test_cycles_and_self_loops_are_refused(tmp_path):
    def mutate(data):
        data["graph"]["edges"].append({"source": "gain/scale/scaled", "target": "gain/scale/number"})
    (error,) = refused(tmp_path, mutate)
    assert "$.graph.edges[2]: a self-loop: gain/scale -> gain/scale" in error

    def mutate(data):
        data["graph"]["nodes"].append({"name": "back", "components": [{"name": "scale", "type": "demo.Scale"}]})
        data["graph"]["edges"] += [{"source": "gain/scale/scaled", "target": "back/scale/number"},
                                   {"source": "back/scale/scaled", "target": "gain/scale/number"}]
    (error,) = refused(tmp_path, mutate)
    assert "a cycle: gain/scale -> back/scale -> gain/scale" in error


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphflow.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)


@pytest.mark.timeout(120)
def test_files_that_gave_tracebacks_give_one_line_errors(tmp_path):
    deep = tmp_path / "deep.app.json"
    deep.write_text('{"name": "d", "graph": {"nodes": [], "edges": []}, "config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    half_deep = tmp_path / "half_deep.app.json"
    nested = {"name": "h", "graph": {"nodes": [], "edges": []}, "ui_config": {}}
    inner = nested["ui_config"]
    for _ in range(900):
        inner["x"] = {}
        inner = inner["x"]
    half_deep.write_text(json.dumps(nested))
    long_subgraph = write(tmp_path, {"name": "l", "graph": {"nodes": [{"name": "s", "subgraph": "a" * 5000 + ".json"}],
                                                           "edges": []}}, "long.app.json")
    huge_period = write(tmp_path, json.dumps({**GOOD, "config": {**GOOD["config"],
                                                                 "src": {"counter": {"tick_period": 1e308 * 10}}}}),
                        "huge.app.json")
    for app in (deep, half_deep, long_subgraph, huge_period, tmp_path / ("x" * 5000 + ".app.json")):
        result = cli("validate", app)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert all(line.startswith("error: ") for line in result.stderr.splitlines()), result.stderr
        result = cli("run", app, "--no-viewer")
        assert result.returncode == 1 and "Traceback" not in result.stderr
