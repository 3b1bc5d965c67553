"""Property-based fuzzing of the app loader: generated and mutated app files never give anything
but a spec or one-line errors that each name a file and a JSON path (no traceback, no hang)."""
import copy
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphflow.loader import AppInvalid, AppSpec, load_app
from graphflow.registry import Registry

REPO = Path(__file__).resolve().parents[2]
APPS = sorted((REPO / "apps").glob("*.json"))
REGISTRY = Registry()  # packs imported once for every example
EXAMPLES = int(os.environ.get("GRAPHFLOW_FUZZ_EXAMPLES", 5000))  # per test; two tests: 10,000 files a run

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10 ** 400), max_value=10 ** 400)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
           | st.sampled_from(["30Hz", "NaNHz", "1e-400s", "1e309Hz", "0ms", "-1s", "block", "latest", "demo.Counter",
                              "x" * 3000, "../" * 50, "a/b/c", "a/b", "", "/", "\x00", "🙂"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


def paths_of(value, prefix=()):
    """Every JSON path in a document (as key/index tuples), down to 30 levels."""
    yield prefix
    if len(prefix) >= 30:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_of(item, prefix + (index,))


@st.composite
def mutated_apps(draw):
    source = draw(st.sampled_from(APPS))
    data = json.loads(source.read_text())
    steps = draw(st.integers(1, 4))
    for step in range(steps):
        paths = list(paths_of(data))
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        actions = ["replace", "delete", "rename", "duplicate"] + (["nest"] if step == steps - 1 else [])
        action = draw(st.sampled_from(actions))  # nesting last: the copies above need shallow data
        key = path[-1]
        if action == "replace":
            parent[key] = draw(json_values)
        elif action == "delete":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = parent.pop(key)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif action == "nest":
            depth = draw(st.sampled_from([2, 50, 300]))
            value = parent[key]
            for _ in range(depth):
                value = [value]
            parent[key] = value
    return source.name, data


def check(tmp_path: Path, name: str, text: str, sets=()) -> None:
    app = tmp_path / name
    app.write_text(text, encoding="utf-8")
    try:
        spec = load_app(app, sets=sets, registry=REGISTRY)
    except AppInvalid as invalid:
        assert invalid.errors
        for error in invalid.errors:
            assert error.file and (error.path.startswith("$") or error.path.startswith("--set")), error
            assert "\n" not in str(error) and "\r" not in str(error), error
    else:
        assert isinstance(spec, AppSpec)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    for file in APPS:  # the subgraph files the apps reference
        shutil.copy(file, folder / file.name)
    return folder


@pytest.mark.timeout(900)
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mutated_apps(), st.lists(st.text(max_size=40), max_size=2))
def test_mutated_app_files_give_a_spec_or_clean_errors(workdir, app, sets):
    name, data = app
    check(workdir, "fuzzed." + name, json.dumps(data, allow_nan=True), sets)


@pytest.mark.timeout(900)
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(json_values.map(lambda v: json.dumps(v, allow_nan=True)),
                 st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                 st.sampled_from(APPS).flatmap(lambda f: st.integers(0, len(f.read_text())).map(
                     lambda cut: f.read_text()[:cut]))))  # truncated files
def test_generated_and_truncated_files_give_clean_errors(workdir, text):
    check(workdir, "generated.app.json", text)
