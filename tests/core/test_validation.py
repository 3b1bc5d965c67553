"""Every class of bad app file gets one line naming the file, the JSON path and what was expected."""
import copy
import json
import shutil

import pytest

from graphflow.cli import main
from graphflow.loader import AppInvalid, load_app

GOOD = {
    "name": "t",
    "modules": ["demo"],
    "graph": {
        "nodes": [
            {"name": "src", "components": [{"name": "counter", "type": "demo.Counter"}]},
            {"name": "gain", "components": [{"name": "scale", "type": "demo.Scale"}]},
            {"name": "sink", "components": [{"name": "writer", "type": "demo.NumberWriter"}]},
        ],
        "edges": [
            {"source": "src/counter/number", "target": "gain/scale/number"},
            {"source": "gain/scale/scaled", "target": "sink/writer/number"},
        ],
    },
    "config": {"sink": {"writer": {"path": "out.jsonl"}}},
}


def write(tmp_path, data, name="app.app.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def errors_of(tmp_path, mutate=None, sets=(), overlays=()):
    data = copy.deepcopy(GOOD)
    if mutate:
        mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(AppInvalid) as info:
        load_app(path, overlays, sets)
    return [str(e) for e in info.value.errors], str(path)


def test_good_app_is_valid(tmp_path):
    spec = load_app(write(tmp_path, GOOD))
    assert [c.full_name for c in spec.components] == ["src/counter", "gain/scale", "sink/writer"]


def test_malformed_json_names_line_and_column(tmp_path):
    path = write(tmp_path, '{\n  "name": "t",\n  "graph": {"nodes": [}\n}')
    with pytest.raises(AppInvalid) as info:
        load_app(path)
    (error,) = info.value.errors
    assert str(error).startswith(f"{path}:3:")
    assert "invalid JSON" in str(error)


def test_a_key_given_twice_is_refused_not_silently_overwritten(tmp_path):
    """JSON keeps the last of two equal keys: a param set twice in a config lost its first value
    without a word."""
    app = write(tmp_path, GOOD)
    overlay = tmp_path / "dup.json"
    overlay.write_text('{"gain": {"scale": {"gain": 2.0, "gain": 3.0}}}')
    with pytest.raises(AppInvalid) as info:
        load_app(app, [overlay])
    assert [str(e) for e in info.value.errors] == [
        f"{overlay}: $: key 'gain' appears twice in one object (only the last would count): keep one"]
    overlay.write_text('{"gain": {"scale": {"gain": 2.0}}, "sink": {"writer": {}}}')  # equal keys in other objects: fine
    assert load_app(app, [overlay])


def test_missing_file(tmp_path):
    with pytest.raises(AppInvalid) as info:
        load_app(tmp_path / "nope.app.json")
    assert "not found" in str(info.value)


def test_schema_missing_key(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d.pop("name"))
    assert errors == [f"{path}: $: missing required key 'name'"]


def test_schema_unknown_key_suggests(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["graph"].__setitem__("edgs", []))
    assert errors == [f"{path}: $.graph: unknown key 'edgs'; did you mean 'edges'?"]


def test_schema_bad_edge_endpoint(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["graph"]["edges"][0].__setitem__("target", "gain/scale"))
    assert errors == [f"{path}: $.graph.edges[0].target: 'gain/scale' does not have the form node/component/port"]


def test_a_bad_process_name_is_said_in_words(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["graph"]["nodes"][1].__setitem__("process", ""))
    assert errors == [f"{path}: $.graph.nodes[1]: process: '' is not a name (a letter or '_', then letters, "
                      f"digits, '_' or '-')"]


def test_schema_node_without_components(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["graph"]["nodes"][1].pop("components"))
    assert len(errors) == 1 and errors[0].startswith(f"{path}: $.graph.nodes[1]:")
    assert "components" in errors[0]


def test_unknown_node_type_suggests(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["graph"]["nodes"][1]["components"][0].__setitem__("type", "demo.Scal"))
    assert errors == [f"{path}: $.graph.nodes[1].components[0].type: unknown node type 'demo.Scal'; did you mean 'demo.Scale'?"]


def test_unknown_module(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["modules"].append("nosuchpack"))
    assert errors[0].startswith(f"{path}: $.modules[1]: node pack 'nosuchpack' not found")


def _use_pack(data, module, type_name):
    data["modules"].append(module)
    data["graph"]["nodes"][1]["components"][0]["type"] = type_name


def test_a_pack_path_that_does_not_exist_says_where_it_looked(tmp_path):
    """Before: 'failed to import: TypeError: the 'package' argument is required to perform a relative
    import for './mypak'', then 'is 'mypak' missing from modules?' for a type it does list."""
    errors, path = errors_of(tmp_path, lambda d: _use_pack(d, "./mypak", "mypak.Scale"))
    assert errors == [f"{path}: $.modules[1]: node pack './mypak' not found: no folder with __init__.py, "
                      f"nor a .py file, at {tmp_path / 'mypak'}"]


def test_a_pack_path_to_a_file_that_is_no_python_says_so(tmp_path):
    """Before: 'failed to import: AttributeError: 'NoneType' object has no attribute 'loader''."""
    (tmp_path / "notes.txt").write_text("not Python")
    errors, path = errors_of(tmp_path, lambda d: _use_pack(d, "./notes.txt", "notes.Scale"))
    assert errors == [f"{path}: $.modules[1]: node pack './notes.txt': {tmp_path / 'notes.txt'} is not a Python "
                      f"file (a pack is a .py file or a folder with __init__.py)"]


def test_a_pack_that_fails_to_import_names_the_line_and_only_once(tmp_path):
    (tmp_path / "mypack").mkdir()
    (tmp_path / "mypack" / "__init__.py").write_text("from .counter import *\n")
    (tmp_path / "mypack" / "counter.py").write_text("import numpy\nimport cv3\n")
    errors, path = errors_of(tmp_path, lambda d: _use_pack(d, "./mypack", "mypack.Counter"))
    assert errors == [f"{path}: $.modules[1]: node pack './mypack' failed to import: ModuleNotFoundError: "
                      f"No module named 'cv3' (at {tmp_path / 'mypack' / 'counter.py'}:2)"]


def test_two_packs_of_one_name_in_two_folders_are_each_their_own(tmp_path):
    """Two apps in one process (tests, a notebook), each with its own ./mypack: the second got the
    first's module, cached under the same name."""
    for folder, node in (("one", "Alpha"), ("two", "Beta")):
        (tmp_path / folder / "mypack").mkdir(parents=True)
        (tmp_path / folder / "mypack" / "__init__.py").write_text(
            f"from graphflow.packs.demo.scale import Scale\n\n\nclass {node}(Scale):\n    pass\n")
        data = copy.deepcopy(GOOD)
        _use_pack(data, "./mypack", f"mypack.{node}")
        load_app(write(tmp_path / folder, data))


def test_type_from_pack_missing_in_modules(tmp_path):
    errors, _ = errors_of(tmp_path, lambda d: d["graph"]["nodes"][1]["components"][0].__setitem__("type", "other.Thing"))
    assert "unknown node type 'other.Thing'; is 'other' missing from modules?" in errors[0]


@pytest.mark.timeout(60)
def test_a_type_of_a_shipped_pack_that_modules_does_not_list_names_the_pack_to_add(tmp_path):
    # io.ImageLoader ships with graphflow (nodes/io/image_loader.py); the app lists only "demo".
    errors, path = errors_of(tmp_path, lambda d: d["graph"]["nodes"][1]["components"][0].__setitem__("type",
                                                                                                   "io.ImageLoader"))
    assert errors == [f"{path}: $.graph.nodes[1].components[0].type: node type 'io.ImageLoader' is in pack 'io', "
                      f"which the app's \"modules\" does not list (add \"io\")"]


def test_unknown_port_suggests(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["graph"]["edges"][0].__setitem__("target", "gain/scale/numbr"))
    assert errors == [f"{path}: $.graph.edges[0].target: demo.Scale has no input (Rx) port 'numbr'; did you mean 'number'?"]


def test_unknown_node_in_edge_suggests(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["graph"]["edges"][0].__setitem__("target", "gian/scale/number"))
    assert errors == [f"{path}: $.graph.edges[0].target: unknown node 'gian'; did you mean 'gain'?"]


def test_port_direction(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["graph"]["edges"][0].__setitem__("source", "gain/scale/number"))
    assert f"{path}: $.graph.edges[0].source: 'number' of demo.Scale is an input, expected an output (Tx)" in errors


def test_edge_message_type_mismatch(tmp_path):
    def mutate(d):
        d["modules"].append(str(tmp_path / "textpack.py"))
        d["graph"]["nodes"].append({"name": "txt", "components": [{"name": "t", "type": "textpack.TextSink"}]})
        d["graph"]["edges"].append({"source": "src/counter/number", "target": "txt/t/text"})
    (tmp_path / "textpack.py").write_text(
        "from graphflow import Codelet, MessageType, Rx, field\n"
        "class Text(MessageType, wire='test/Text'):\n    text: str = field('')\n"
        "class TextSink(Codelet):\n    text = Rx(Text)\n")
    errors, path = errors_of(tmp_path, mutate)
    assert errors == [f"{path}: $.graph.edges[2]: message type mismatch: src/counter/number publishes "
                      f"demo/Number, but txt/t/text expects test/Text"]


def test_message_type_loaded_twice_is_named_as_such(tmp_path):
    # sinks.py imports blobs by module name while the app loads blobs.py from its path: two classes
    # with one wire name. The error must say so, not "publishes test/Blob, but expects test/Blob".
    (tmp_path / "blobs.py").write_text(
        "from graphflow import Codelet, MessageType, Tx, field\n"
        "class Blob(MessageType, wire='test/Blob'):\n    size: int = field(0)\n"
        "class BlobSource(Codelet):\n    blob = Tx(Blob)\n")
    (tmp_path / "sinks.py").write_text(
        f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nfrom blobs import Blob\n"
        "from graphflow import Codelet, Rx\n"
        "class BlobSink(Codelet):\n    blob = Rx(Blob)\n")

    def mutate(d):
        d["modules"] += [str(tmp_path / "blobs.py"), str(tmp_path / "sinks.py")]
        d["graph"]["nodes"] += [{"name": "b", "components": [{"name": "s", "type": "blobs.BlobSource"}]},
                                {"name": "k", "components": [{"name": "s", "type": "sinks.BlobSink"}]}]
        d["graph"]["edges"].append({"source": "b/s/blob", "target": "k/s/blob"})
    errors, path = errors_of(tmp_path, mutate)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}: $.graph.edges[2]: message type test/Blob of b/s/blob (module ")
    assert "the same file was loaded as two modules; import it by one name everywhere" in errors[0]


def test_unknown_param_suggests(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["config"].__setitem__("gain", {"scale": {"gian": 2}}))
    assert errors == [f"{path}: $.config.gain.scale.gian: demo.Scale has no param 'gian'; did you mean 'gain'?"]


def test_param_wrong_type(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["config"].__setitem__("gain", {"scale": {"gain": "high"}}))
    assert errors == [f'{path}: $.config.gain.scale.gain: gain: expected float, got string "high"']


def test_param_out_of_range(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["config"].__setitem__("src", {"counter": {"count": -1}}))
    assert errors == [f"{path}: $.config.src.counter.count: count: expected a value >= 0, got -1"]


def test_bad_period(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["config"].__setitem__("src", {"counter": {"tick_period": "fast"}}))
    assert errors == [f"{path}: $.config.src.counter.tick_period: tick_period: expected a period like '30Hz', '50ms' or '2s', got 'fast'"]


def test_required_param_missing(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d.pop("config"))
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}: $.graph.nodes[2].components[0]: required param 'path' of demo.NumberWriter is not set")


def test_config_for_unknown_node(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["config"].__setitem__("sinc", {"writer": {}}))
    assert errors == [f"{path}: $.config.sinc: config for unknown node 'sinc'; did you mean 'sink'?"]
    errors, path = errors_of(tmp_path, lambda d: d["config"]["sink"].__setitem__("writr", {"path": "x"}))
    assert errors == [f"{path}: $.config.sink.writr: config for unknown component sink/writr; did you mean 'writer'?"]


def test_set_typed_and_errors(tmp_path):
    path = write(tmp_path, GOOD)
    spec = load_app(path, sets=["gain/scale/gain=0.5", "src/counter/tick_period=20Hz"])
    assert spec.params_of("gain/scale") == {"gain": 0.5}
    assert spec.params_of("src/counter")["tick_period"] == pytest.approx(0.05)
    with pytest.raises(AppInvalid) as info:
        load_app(path, sets=["gain/scale/gain=loud", "gain/scale=3", "gain/scale/gian=1"])
    messages = [str(e) for e in info.value.errors]
    assert "<command line>: --set gain/scale=3: expected node/component/param=value" in messages
    assert "<command line>: --set gain/scale/gain=loud: gain: expected float, got 'loud'" in messages
    assert "<command line>: --set gain/scale/gian=1: demo.Scale has no param 'gian'; did you mean 'gain'?" in messages


def test_config_overlay_later_wins(tmp_path):
    path = write(tmp_path, GOOD)
    first = write(tmp_path, {"gain": {"scale": {"gain": 4.0}}}, "a.json")
    second = write(tmp_path, {"gain": {"scale": {"gain": 5.0}}}, "b.json")
    assert load_app(path, [first, second]).params_of("gain/scale") == {"gain": 5.0}
    assert load_app(path, [first], ["gain/scale/gain=6"]).params_of("gain/scale") == {"gain": 6.0}
    bad = write(tmp_path, {"gain": {"scale": {"gain": "x"}}}, "bad.json")
    with pytest.raises(AppInvalid) as info:
        load_app(path, [bad])
    assert [str(e) for e in info.value.errors] == [f'{bad}: $.gain.scale.gain: gain: expected float, got string "x"']


def test_subgraph_errors(tmp_path):
    errors, path = errors_of(tmp_path, lambda d: d["graph"]["nodes"].append({"name": "sub", "subgraph": "missing.subgraph.json"}))
    assert errors[0].startswith(f"{path}: $.graph.nodes[3].subgraph: subgraph file 'missing.subgraph.json' not found")


def test_subgraph_interface_unknown_channel(tmp_path, repo):
    app = json.loads((repo / "apps" / "demo.app.json").read_text())
    app["graph"]["nodes"][1]["subgraph"] = str(repo / "apps" / "scale_add.subgraph.json")
    app["graph"]["edges"][0]["target"] = "arith.interface/subgraph/aa"
    app["config"]["sink"]["writer"]["path"] = str(tmp_path / "n.jsonl")
    path = write(tmp_path, app)
    with pytest.raises(AppInvalid) as info:
        load_app(path)
    assert [str(e) for e in info.value.errors] == [
        f"{path}: $.graph.edges[0].target: subgraph interface arith.interface/subgraph has no input 'aa'; did you mean 'a'?"]


def test_a_subgraph_interface_port_names_the_channel_it_forwards_nested_too(tmp_path, repo):
    """Users name a subgraph's channels by its interface (``arith.interface/subgraph/total``):
    in ui_config, --channels, --map and the viewer's API, as in edges. Expected names read from
    apps/scale_add.subgraph.json: total is add/add/total's; a and b the tickers' outputs."""
    outer = {"name": "outer", "modules": ["demo"], "graph": {
        "nodes": [{"name": "interface", "components": [{"name": "subgraph", "type": "Subgraph"}]},
                  {"name": "arith", "subgraph": str(repo / "apps" / "scale_add.subgraph.json")}],
        "edges": [{"source": "interface/subgraph/a", "target": "arith.interface/subgraph/a"},
                  {"source": "interface/subgraph/b", "target": "arith.interface/subgraph/b"},
                  {"source": "arith.interface/subgraph/total", "target": "interface/subgraph/total"}]}}
    write(tmp_path, outer, "outer.subgraph.json")
    app = json.loads((repo / "apps" / "demo.app.json").read_text())
    app["graph"]["nodes"][1] = {"name": "wrap", "subgraph": "outer.subgraph.json"}
    app["graph"]["edges"] = [{"source": "ticker/ones/number", "target": "wrap.interface/subgraph/a"},
                             {"source": "ticker/tens/number", "target": "wrap.interface/subgraph/b"},
                             {"source": "wrap.interface/subgraph/total", "target": "sink/writer/number"}]
    app["config"] = {"sink": {"writer": {"path": str(tmp_path / "n.jsonl")}}}
    app["ui_config"] = {"windows": {"sums": {"renderer": "plot", "channels": [
        {"name": "wrap.interface/subgraph/total"}, {"name": "ticker/ones/number"}]}}}
    spec = load_app(write(tmp_path, app))
    assert dict(spec.channel_aliases) == {
        "wrap.interface/subgraph/total": "wrap.arith.add/add/total",  # through two interfaces
        "wrap.arith.interface/subgraph/total": "wrap.arith.add/add/total",
        "wrap.interface/subgraph/a": "ticker/ones/number", "wrap.arith.interface/subgraph/a": "ticker/ones/number",
        "wrap.interface/subgraph/b": "ticker/tens/number", "wrap.arith.interface/subgraph/b": "ticker/tens/number"}
    assert spec.channel_name("wrap.interface/subgraph/total") == "wrap.arith.add/add/total"
    assert spec.channel_name("ticker/ones/number") == "ticker/ones/number"
    assert [c["name"] for c in spec.ui_config["windows"]["sums"]["channels"]] == [
        "wrap.arith.add/add/total", "ticker/ones/number"]
    app["ui_config"]["windows"]["sums"]["channels"][0]["name"] = "wrap.interface/subgraph/totl"
    with pytest.raises(AppInvalid, match=r"ui_config\.windows\.sums\.channels\[0\]"):
        load_app(write(tmp_path, app))


@pytest.mark.parametrize("edge, key, port, message", [
    (2, "target", "sink/writer/numbr", "demo.NumberWriter has no input (Rx) port 'numbr'; did you mean 'number'?"),
    (0, "source", "ticker/ones/numbr", "demo.Counter has no output (Tx) port 'numbr'; did you mean 'number'?"),
])
def test_a_bad_port_on_an_edge_through_a_subgraph_is_reported_where_it_is_written(tmp_path, repo, edge, key, port,
                                                                                    message):
    """An edge from a subgraph's output to a mistyped input is joined with the subgraph's own edge
    into one; the error named the subgraph file, at an edge index of the app (found by a newcomer)."""
    shutil.copy(repo / "apps" / "scale_add.subgraph.json", tmp_path)
    app = json.loads((repo / "apps" / "demo.app.json").read_text())
    app["graph"]["edges"][edge][key] = port
    path = write(tmp_path, app)
    with pytest.raises(AppInvalid) as info:
        load_app(path)
    assert [str(e) for e in info.value.errors] == [f"{path}: $.graph.edges[{edge}].{key}: {message}"]


@pytest.mark.timeout(60)
def test_an_edge_between_two_interface_ports_is_kept_so_the_cycle_it_closes_is_found(tmp_path, repo):
    """apps/demo.app.json plus total -> a on its subgraph's interface: scale -> add -> (total -> a)
    -> scale is a cycle. That edge was dropped when the interface was collapsed, and the app passed."""
    shutil.copy(repo / "apps" / "scale_add.subgraph.json", tmp_path)
    app = json.loads((repo / "apps" / "demo.app.json").read_text())
    app["graph"]["edges"].append({"source": "arith.interface/subgraph/total", "target": "arith.interface/subgraph/a"})
    path = write(tmp_path, app)
    with pytest.raises(AppInvalid) as info:
        load_app(path)
    assert [str(e) for e in info.value.errors] == [
        f"{path}: $.graph.edges[3]: a cycle: arith.scale/scale -> arith.add/add -> arith.scale/scale; "
        f"graphflow runs acyclic graphs (nothing would send a cycle its first message)"]
    # A loop of interface ports alone (the subgraph passes b straight out as out2, the app feeds out2
    # back to b) has no component to report a cycle at: the edge that closes it is named.
    sub = json.loads((tmp_path / "scale_add.subgraph.json").read_text())
    sub["graph"]["edges"].append({"source": "interface/subgraph/b", "target": "interface/subgraph/out2"})
    write(tmp_path, sub, "scale_add.subgraph.json")
    app["graph"]["edges"][3] = {"source": "arith.interface/subgraph/out2", "target": "arith.interface/subgraph/b"}
    with pytest.raises(AppInvalid) as info:
        load_app(write(tmp_path, app))
    assert [str(e) for e in info.value.errors] == [
        f"{path}: $.graph.edges[3]: edge arith.interface/subgraph/out2 -> arith.interface/subgraph/b closes a loop "
        f"of subgraph interface ports that no component is on"]


def test_subgraph_errors_name_the_subgraph_file(tmp_path):
    sub = {"name": "s", "modules": ["demo"], "graph": {"nodes": [
        {"name": "interface", "components": [{"name": "subgraph", "type": "Subgraph"}]},
        {"name": "scale", "components": [{"name": "scale", "type": "demo.Scael"}]}]}}
    write(tmp_path, sub, "s.subgraph.json")
    errors, _ = errors_of(tmp_path, lambda d: d["graph"]["nodes"].append({"name": "sub", "subgraph": "s.subgraph.json"}))
    assert errors == [f"{tmp_path / 's.subgraph.json'}: $.graph.nodes[1].components[0].type: unknown node type "
                      f"'demo.Scael'; did you mean 'demo.Scale'?"]


def test_validate_cli_exit_codes(tmp_path, repo, capsys):
    assert main(["validate", str(repo / "apps" / "demo.app.json")]) == 0
    bad = copy.deepcopy(GOOD)
    bad["config"]["gain"] = {"scale": {"gain": "x"}}
    path = write(tmp_path, bad)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"error: {path}: $.config.gain.scale.gain:" in err


def test_run_performs_the_same_checks(tmp_path, capsys):
    bad = copy.deepcopy(GOOD)
    bad["config"]["sink"]["writer"]["path"] = str(tmp_path / "must_not_exist" / "x.jsonl")
    bad["config"]["gain"] = {"scale": {"gain": "x"}}
    path = write(tmp_path, bad)
    assert main(["run", str(path), "--quiet"]) == 1
    assert "nothing was run" in capsys.readouterr().err
    assert not (tmp_path / "must_not_exist").exists()


@pytest.mark.parametrize("name", ["x/../../y", "a" * 65, "my app", "-dash", "_under"])
def test_an_app_name_that_cannot_name_a_file_is_refused(tmp_path, name):
    """The name names the app's socket files (/tmp/graphflow-run-*/NAME-0.sock), recordings and
    services: '../..' pointed outside the folder, a long one failed at run time ('File name too long')."""
    errors, path = errors_of(tmp_path, lambda d: d.update(name=name))
    assert len(errors) == 1 and errors[0].startswith(f"{path}: $.name: ")
