"""End to end through the command line: run, validate, nodes, graph, schemas."""
import json
import shutil
import subprocess
import sys

import pytest

from graphflow.cli import main


def test_run_demo_app_to_completion_with_stats(tmp_path, repo, capsys):
    stats = tmp_path / "stats.json"
    out = tmp_path / "numbers.jsonl"
    code = main(["run", str(repo / "apps" / "demo.app.json"), "--no-viewer", "--stats-json", str(stats),
                 "--set", f"sink/writer/path={out}", "--set", "ticker/ones/tick_period=500Hz",
                 "--set", "ticker/tens/tick_period=500Hz"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "job report" in printed and "arith.add/add" in printed
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 100
    assert lines[3]["value"] == 3 * 3.0 + 30.0  # gain 3 · a + b
    report = json.loads(stats.read_text())
    assert report["components"]["ticker/ones"]["ticks"] == 100
    assert report["channels"]["arith.add/add/total"]["messages"] == 100
    assert report["channels"]["ticker/ones/number"]["receivers"]["arith.scale/scale/number"]["latency_ms"]["p90"] is not None


def test_report_table_gives_each_receiver_a_row_and_fits_long_names():
    from graphflow.cli import format_report
    tick = {"median": 0.5, "p90": 1.0, "max": 2.0}
    long_name = "decoder.merge_split_graphs/merge_split_graphs"
    report = {"elapsed_s": 1.0,
              "components": {"a/src": {"ticks": 3, "tick_ms": tick, "errors": 0},
                             long_name: {"ticks": 12345, "tick_ms": tick, "errors": 1}},
              "channels": {"a/src/out": {"messages": 3, "rate": 3.0, "drops": 2, "receivers": {
                  "b/fast/in": {"dropped": 0, "latency_ms": {"median": 1.0, "p90": 2.0}},
                  "c/slow/in": {"dropped": 2, "latency_ms": {"median": 7.0, "p90": 9.0}}}},
                  "a/src/unread": {"messages": 1, "rate": 1.0, "drops": 0, "receivers": {}}}}
    lines = format_report(report).splitlines()
    component_rows = [line for line in lines if line.startswith(("a/src ", long_name))]
    assert [row.split()[1] for row in component_rows] == ["3", "12345"]
    assert len({len(row) for row in component_rows}) == 1  # one width: the long name did not push columns
    fast, = (line.split() for line in lines if "b/fast/in" in line)
    slow, = (line.split() for line in lines if "c/slow/in" in line)
    unread, = (line.split() for line in lines if line.startswith("a/src/unread"))
    assert fast == ["a/src/out", "b/fast/in", "3", "3.0", "0", "1.000", "2.000"]
    assert slow == ["a/src/out", "c/slow/in", "3", "3.0", "2", "7.000", "9.000"]
    assert unread == ["a/src/unread", "-", "1", "1.0", "0", "-", "-"]


def test_run_subprocess_exit_code_on_node_failure(tmp_path, repo):
    pack = tmp_path / "boom.py"
    pack.write_text("from graphflow import Codelet, Rx\nfrom graphflow.packs.demo.messages import Number\n"
                    "class Boom(Codelet):\n    number = Rx(Number)\n"
                    "    def start(self):\n        self.tick_on_message(self.number)\n"
                    "    def tick(self):\n        raise ValueError('boom at ' + str(self.number.read().payload.value))\n")
    app = {"name": "b", "modules": ["demo", "boom.py"], "graph": {
        "nodes": [{"name": "src", "components": [{"name": "c", "type": "demo.Counter"}]},
                  {"name": "bad", "components": [{"name": "boom", "type": "boom.Boom"}]}],
        "edges": [{"source": "src/c/number", "target": "bad/boom/number"}]},
        "config": {"src": {"c": {"tick_period": "100Hz"}}}}
    (tmp_path / "b.app.json").write_text(json.dumps(app))
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(tmp_path / "b.app.json"), "--quiet", "--no-viewer"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "component bad/boom failed in tick()" in result.stderr
    assert "ValueError: boom at 0.0" in result.stderr


def test_a_path_a_node_cannot_open_in_start_is_one_line_naming_the_node(tmp_path, repo):
    """An OSError in start() (a writer's path that is a folder) is the user's to fix: one line with
    the node and the reason, exit 1, no traceback. (In tick() a traceback still shows a bug.)"""
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(repo / "apps" / "demo.app.json"),
                             "--no-viewer", "--quiet", "--set", f"sink/writer/path={tmp_path}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: sink/writer: [Errno 21] Is a directory: '{tmp_path}'"
    assert "Traceback" not in result.stderr


def test_nodes_lists_ports_params_docs(capsys):
    assert main(["nodes", "demo."]) == 0
    text = capsys.readouterr().out
    assert "demo.Scale" in text and "<- number: demo/Number" in text and "* gain: float = 2.0" in text
    assert main(["nodes", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    scale = next(n for n in data["nodes"] if n["type"] == "demo.Scale")
    assert scale["params"]["gain"] == {"type": "float", "doc": "Multiplier.", "required": False, "default": 2.0}
    assert {p["name"]: p["direction"] for p in scale["ports"]} == {"number": "rx", "scaled": "tx"}
    assert "demo/Number" in data["messages"]


def test_nodes_lists_a_pack_of_ones_own_given_by_path(tmp_path, capsys, monkeypatch):
    """A pack beside the user's app is not installed: --module loads it (a newcomer could not list one)."""
    pack = tmp_path / "mypack"
    pack.mkdir()
    (pack / "__init__.py").write_text(
        "from graphflow import Codelet, Param, Tx\n"
        "from graphflow.packs.demo.messages import Number\n\n\n"
        "class Ticker(Codelet):\n"
        "    \"\"\"Says one number.\"\"\"\n"
        "    number = Tx(Number, 'The number.')\n"
        "    value = Param(float, 4.0, 'What it says.')\n")
    monkeypatch.chdir(tmp_path)
    assert main(["nodes", "--module", "./mypack", "mypack."]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mypack.Ticker\n    Says one number.\n  -> number: demo/Number") and "value: float = 4.0" in out
    assert main(["nodes", "--module", "./mypak"]) == 1
    assert capsys.readouterr().err == (f"error: node pack './mypak' not found: no folder with "
                                       f"__init__.py, nor a .py file, at {tmp_path / 'mypak'}\n")


def test_verbose_goes_before_or_after_the_command_and_version_prints(repo, capsys):
    for argv in (["-v", "validate", str(repo / "apps" / "demo.app.json")],
                 ["validate", str(repo / "apps" / "demo.app.json"), "-v"]):
        assert main(argv) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("graphflow 0.")


def test_graph_dot_and_mermaid(repo, capsys):
    assert main(["graph", str(repo / "apps" / "demo.app.json"), "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith('digraph "demo"') and '"ticker/ones" -> "arith.scale/scale"' in dot
    assert main(["graph", str(repo / "apps" / "demo.app.json"), "--format", "mermaid"]) == 0
    mermaid = capsys.readouterr().out
    assert "arith_add_add -- \"total → number (demo/Number)\" --> sink_writer" in mermaid
    # The subgraph's nodes (apps/scale_add.subgraph.json's scale and add) in a box of their own.
    box = mermaid[mermaid.index('subgraph s_arith_["subgraph arith"]'):]
    box = box[:box.index("\n  end")]
    assert 'subgraph n_arith_scale["arith.scale"]' in box and 'subgraph n_arith_add["arith.add"]' in box
    assert "ticker" not in box and "sink" not in box
    dot = dot[dot.index('subgraph "cluster_subgraph_arith"'):]
    dot = dot[:dot.index("\n  }")]
    assert 'label="arith.scale"' in dot and 'label="arith.add"' in dot and "ticker" not in dot


def test_graph_of_a_split_app_groups_nodes_by_process(repo, capsys, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODEL_PATH", str(repo.parent / "shared" / "models"))
    app = str(repo / "apps" / "openpose_split.app.json")
    assert main(["graph", app, "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    inference, post = dot.index('label="process inference"'), dot.index('label="process post"')
    assert inference < dot.index('"inference/tensor_rt_inference" [') < post < dot.index('"viz/visualizer" [')
    assert '"decoder.refine/refine_part_coordinates" [' in dot[post:]  # a subgraph's nodes: its node's process
    # the two edges between the processes are dashed, the others not
    assert dot.count("style=dashed];") == 2
    assert '"feeder/image_loader" -> "viz/visualizer" [label="color → image (vision/Image)", style=dashed];' in dot
    assert '"feeder/image_loader" -> "encoder/color_camera_encoder" [label="color → rgb_image (vision/Image)"];' in dot
    assert main(["graph", app, "--format", "mermaid"]) == 0
    mermaid = capsys.readouterr().out
    assert 'subgraph p_post["process post"]' in mermaid
    assert 'feeder_image_loader -. "color → image (vision/Image)" .-> viz_visualizer' in mermaid


def test_message_schemas_are_up_to_date():
    assert main(["schemas", "--check"]) == 0, "run: graphflow schemas"


def test_input_without_io_section_is_an_error(repo, capsys):
    assert main(["run", str(repo / "apps" / "demo.app.json"), "--input", "x.jpg"]) == 1
    assert f"{repo / 'apps' / 'demo.app.json'}: $.io: no 'input' entry, so --input has nothing to set" in capsys.readouterr().err


def test_input_and_a_set_of_the_param_it_sets_are_refused_together(repo, tmp_path, capsys):
    """--input X --set feeder/image_loader/path=Y: the --set won and --input was ignored in silence."""
    app = str(repo / "apps" / "openpose.app.json")
    args = ["run", app, "--no-viewer", "--input", str(tmp_path), "--output", str(tmp_path / "out")]
    assert main([*args, "--set", f"feeder/image_loader/path={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [f"error: <command line>: --set feeder/image_loader/path={tmp_path}: sets the param "
                                f"--input sets (the app's io.input): give one of them",
                                "1 problem found; nothing was run."]
    assert main([*args, "--set", "feeder/image_loader/path"]) == 1  # a malformed --set is still its own error
    assert "sets the param" not in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_nodes_shows_ports_with_their_message_fields_and_params_from_the_declarations(capsys):
    assert main(["nodes", "demo.Scale"]) == 0
    out = capsys.readouterr().out
    assert "  <- number: demo/Number  [queue 8, latest]  Numbers in." in out
    assert "       .value: float  The number." in out
    assert "  * gain: float = 2.0  Multiplier." in out
    assert main(["nodes", "demo.Counter"]) == 0  # a period ("10Hz" in the declaration) in seconds
    assert "  * tick_period: period = 0.1 s (at start only)  How often to publish." in capsys.readouterr().out


def test_nodes_says_when_its_filter_matches_nothing_and_shows_open_ranges(capsys):
    assert main(["nodes", "no.SuchNode"]) == 1
    assert capsys.readouterr().err.strip() == "error: no node type matches 'no.SuchNode' (graphflow nodes lists them all)"
    assert main(["nodes", "openpose.EdgeCandidates"]) == 0
    listed = capsys.readouterr().out
    assert "* threshold_edge_size: float = 0.0 >= 0.0  " in listed and ", None]" not in listed


def test_an_invalid_app_says_nothing_was_run_only_where_something_would_have(tmp_path, capsys):
    missing = str(tmp_path / "nope.app.json")
    assert main(["graph", missing]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "1 problem found."
    assert main(["run", missing, "--no-viewer"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "1 problem found; nothing was run."


def test_a_node_log_line_names_its_component_once():
    import logging
    from graphflow.cli import _LogFormatter

    def line(logger, message, *args):
        return _LogFormatter().format(logging.LogRecord(logger, logging.INFO, __file__, 1, message, args, None))
    assert line("graphflow.node.out/writer", "%s: wrote %d results", "out/writer", 6) == "INFO out/writer: wrote 6 results"
    assert line("graphflow.node.out/writer", "wrote %d results", 6) == "INFO out/writer: wrote 6 results"
    assert line("graphflow.scheduler", "drained") == "INFO graphflow.scheduler: drained"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", [["run", "--no-viewer", "--stats-json"], ["bench", "--frames", "5", "--json"],
                                     ["eval", "--annotations", "a.json", "--images", "imgs", "--json"]])
def test_an_output_file_that_cannot_be_written_is_refused_before_the_app_runs(command, tmp_path, repo):
    """A report or score file under a file, or a folder of its name, would fail only after the
    whole run: argparse refuses it (exit 2, the option named). Missing folders on the way are made,
    as --output makes its folder."""
    (tmp_path / "somefile").write_text("")
    numbers = tmp_path / "numbers.jsonl"
    for bad, why in [(tmp_path / "somefile" / "s.json", f"{tmp_path / 'somefile'} is a file, not a folder"),
                     (tmp_path / "somefile" / "new" / "s.json", f"{tmp_path / 'somefile'} is a file, not a folder"),
                     (tmp_path, "is a folder; give a file name")]:
        name, *options = command
        result = subprocess.run([sys.executable, "-m", "graphflow.cli", name, str(repo / "apps" / "demo.app.json"),
                                 "--set", f"sink/writer/path={numbers}", *options, str(bad)],
                                capture_output=True, text=True, timeout=100, cwd=repo)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        last = result.stderr.splitlines()[-1]
        assert last.startswith(f"graphflow {name}: error: argument {options[-1]}: ") and last.endswith(why)
        assert not numbers.exists()  # refused before the app ran
    if name != "eval":
        made = tmp_path / "new" / "folder" / "s.json"
        limit = ["--max-ticks", "5"] if name == "run" else []
        result = subprocess.run([sys.executable, "-m", "graphflow.cli", name, str(repo / "apps" / "demo.app.json"),
                                 "--set", f"sink/writer/path={numbers}", *limit, *options, str(made)],
                                capture_output=True, text=True, timeout=100, cwd=repo)
        assert result.returncode == 0, result.stderr
        assert json.loads(made.read_text())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command, option, value, expected", [
    (["run", "apps/demo.app.json"], "--workers", "0", "a whole number from 1 to 1024"),
    (["run", "apps/demo.app.json"], "--workers", "-3", "a whole number from 1 to 1024"),
    (["run", "apps/demo.app.json"], "--workers", "99999999999", "a whole number from 1 to 1024"),  # (a thread each)
    (["run", "apps/demo.app.json"], "--max-ticks", "0", "a whole number, 1 or more"),
    (["run", "apps/demo.app.json"], "--duration", "-1", "a positive number of seconds"),
    (["run", "apps/demo.app.json"], "--duration", "nan", "a positive number of seconds"),
    (["bench", "apps/demo.app.json"], "--frames", "0", "a whole number, 1 or more"),
    (["bench", "apps/demo.app.json"], "--frames", "-5", "a whole number, 1 or more"),
    (["bench", "apps/demo.app.json"], "--workers", "0", "a whole number from 1 to 1024"),
    (["eval", "apps/demo.app.json", "--annotations", "a.json", "--images", "i"], "--workers", "0",
     "a whole number from 1 to 1024"),
    (["replay", "r.mcap", "apps/demo.app.json"], "--start", "-2", "a number of seconds from 0 to 1e+09"),
    (["replay", "r.mcap", "apps/demo.app.json"], "--end", "nan", "a number of seconds from 0 to 1e+09"),
    (["replay", "r.mcap", "apps/demo.app.json"], "--start", "1e300", "a number of seconds from 0 to 1e+09"),
    (["view", "r.mcap"], "--duration", "0", "a positive number of seconds"),
    (["export", "r.mcap", "--video", "v.mp4"], "--fps", "0", "a positive number"),
])
def test_a_numeric_option_out_of_range_is_a_bad_command_line_naming_it(command, option, value, expected, tmp_path, repo):
    numbers = tmp_path / "numbers.jsonl"
    sets = ["--set", f"sink/writer/path={numbers}"] if command[0] in ("run", "bench") else []
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", *command, *sets, f"{option}={value}"],
                            capture_output=True, text=True, timeout=50, cwd=repo)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == \
        f"graphflow {command[0]}: error: argument {option}: expected {expected}, got {value!r}"
    assert not numbers.exists()  # nothing ran


@pytest.mark.timeout(60)
def test_run_warns_of_an_unconnected_input_that_keeps_a_component_from_ever_ticking(tmp_path, repo):
    """demo.Add ticks on a and b matched in time (its start() says so): with b unconnected it
    never ticks, and the writer after it writes nothing. One warning line per such input; none for
    the demo app, whose inputs are all connected."""
    app = json.loads((repo / "apps" / "demo.app.json").read_text())
    app["graph"]["edges"] = [e for e in app["graph"]["edges"] if e["target"] != "arith.interface/subgraph/b"]
    shutil.copy(repo / "apps" / "scale_add.subgraph.json", tmp_path)
    (tmp_path / "a.app.json").write_text(json.dumps(app))
    warning = "WARNING graphflow.scheduler: input arith.add/add/b is not connected: the component will never tick"
    for path, expected in [(tmp_path / "a.app.json", [warning]), (repo / "apps" / "demo.app.json", [])]:
        result = subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(path), "--no-viewer", "--quiet",
                                 "--max-ticks", "3", "--set", f"sink/writer/path={tmp_path / 'n.jsonl'}"],
                                capture_output=True, text=True, timeout=50, cwd=repo)
        assert result.returncode == 0, result.stderr
        assert [line for line in result.stderr.splitlines() if "not connected" in line] == expected
