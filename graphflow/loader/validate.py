"""Stage 3: the checks. The JSON Schema (``schemas/app.schema.json``) per file, then the composed
graph against the node declarations: packs import, types exist, ports exist and face the right
way, edge message types match, params exist with the declared types and ranges, required params
are set. Returns the problems; changes nothing (only the registry imports the packs it names)."""
from __future__ import annotations

import difflib
import functools
import json
import logging
from pathlib import Path
from typing import Any

import jsonschema

from ..params import Param
from ..registry import Registry, known_packs, load_error
from .spec import SCHEMA_DIR, AppError, ComponentSpec, Composition, EdgeSpec

log = logging.getLogger("graphflow.loader")


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / "app.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _json_path(parts) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def near(name: str, candidates) -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"


def schema_errors(data: Any, file: str) -> list[AppError]:
    errors = []
    for error in sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        errors.append(AppError(file, _json_path(error.absolute_path), _schema_message(error)))
    return errors


def _schema_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        # A node is either {name, components} or {name, subgraph}: explain the branch it meant.
        branch = 1 if "subgraph" in error.instance and "components" not in error.instance else 0
        if "subgraph" in error.instance and "components" in error.instance:
            return "a node has either 'components' or 'subgraph', not both"
        inner = [e for e in error.context if e.relative_schema_path[0] == branch]
        if inner:
            best = jsonschema.exceptions.best_match(inner)
            where = _json_path(best.relative_path)
            return (f"{where[2:]}: " if len(where) > 1 else "") + _schema_message(best)
        return "a node needs 'name' and either 'components' or 'subgraph'"
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        hint = near(extra[0], allowed) if extra else ""
        return f"unknown key {extra[0]!r}{hint or f' (allowed: {allowed})'}" if extra else error.message
    if error.validator == "pattern":
        form = _PATTERN_WORDS.get(error.validator_value)
        if form is None:  # a short description is the form ("node/component/port"), prose is not
            described = error.schema.get("description", "")
            form = described if described and " " not in described else f"the pattern {error.validator_value}"
        return f"{error.instance!r} is not {form}" if form.startswith("a ") else \
            f"{error.instance!r} does not have the form {form}"
    if error.validator == "required":
        return f"missing required key {error.message.split(chr(39))[1]!r}"
    return error.message


# The schema's name patterns, in words.
_PATTERN_WORDS = {
    "^[A-Za-z_][A-Za-z0-9_-]*$": "a name (a letter or '_', then letters, digits, '_' or '-')",
    "^[A-Za-z_][A-Za-z0-9_.-]*$": "a name (a letter or '_', then letters, digits, '_', '.' or '-')",
}

MAX_QUEUE = 1_000_000  # messages; a larger queue is a mistake (its memory would be unbounded in practice)


def _cycle_errors(edges) -> list[AppError]:
    """graphflow runs acyclic graphs: a cycle has no message to start it (no app can give one
    yet), so it would wait forever. Each cycle is reported once, at the edge that closes it."""
    downstream: dict[str, list] = {}
    for edge in edges:
        downstream.setdefault(edge.source.rsplit("/", 1)[0], []).append(edge)
    errors: list[AppError] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(component: str) -> None:
        state[component] = 1
        path.append(component)
        for edge in downstream.get(component, ()):
            target = edge.target.rsplit("/", 1)[0]
            if state.get(target) == 1:
                loop = " -> ".join(path[path.index(target):] + [target])
                what = "a self-loop" if target == component else "a cycle"
                errors.append(AppError(edge.file, edge.path, f"{what}: {loop}; graphflow runs acyclic graphs "
                                                             f"(nothing would send a cycle its first message)"))
            elif target not in state:
                visit(target)
        path.pop()
        state[component] = 2

    for component in list(downstream):
        if component not in state:
            visit(component)
    return errors


def carried(cls, endpoint: str, port, params: dict):
    """The message type a port carries: its declaration's, or for a bridge (net.Publisher,
    net.Subscriber) the one its params name (its class's ``port_message_type``)."""
    hook = getattr(cls, "port_message_type", None)
    if port is None or hook is None:
        return port and port.message_type
    return hook(endpoint.rsplit("/", 1)[1], params)  # None: its params name none (that param's error says so)


def _split_port(text: str) -> tuple[str, str, str]:
    node, component, port = text.rsplit("/", 2)
    return node, component, port


def _in_known_pack(type_name: str) -> bool:
    """Whether a pack that ships with graphflow (or an entry point's) has this type: then the app
    only forgot to list it. Looked up in a registry of its own: the app's keeps what it names."""
    pack = type_name.split(".")[0]
    if pack not in known_packs():
        return False
    scratch = Registry()
    try:
        scratch.load_pack(pack)
    except Exception:  # a pack that fails to import: the plain "unknown node type" is all we can say
        return False
    return scratch.get(type_name) is not None


def validate(spec: Composition, registry: Registry) -> list[AppError]:
    errors: list[AppError] = []
    types: dict[str, type] = {}  # component full name -> class
    failed_packs = set()  # their node types are not reported unknown as well
    for name, base, file, path in spec.modules:
        try:
            registry.load_pack(name, base)
        except Exception as exc:
            log.debug("node pack %r did not load", name, exc_info=exc)
            errors.append(AppError(file, path, load_error(name, exc)))
            failed_packs.add(Path(name).stem)

    # components ---------------------------------------------------------------------------------
    seen: dict[str, ComponentSpec] = {}
    nodes: dict[str, dict[str, ComponentSpec]] = {}
    for comp in spec.components:
        if comp.full_name in seen:
            errors.append(AppError(comp.file, comp.path, f"component {comp.full_name!r} is defined twice"))
            continue
        seen[comp.full_name] = comp
        nodes.setdefault(comp.node, {})[comp.name] = comp
        cls = registry.get(comp.type)
        if cls is None:
            pack = comp.type.split(".")[0]
            if pack in failed_packs:
                continue  # said once, at the pack
            if pack not in registry.packs and _in_known_pack(comp.type):
                errors.append(AppError(comp.file, comp.path + ".type", f"node type {comp.type!r} is in pack {pack!r}, "
                                       f"which the app's \"modules\" does not list (add {json.dumps(pack)})"))
                continue
            hint = near(comp.type, registry.types)
            if not hint and pack not in registry.packs and "." in comp.type:
                hint = f"; is {pack!r} missing from modules?"
            errors.append(AppError(comp.file, comp.path + ".type", f"unknown node type {comp.type!r}{hint}"))
        else:
            types[comp.full_name] = cls

    def port(text: str, edge: EdgeSpec, key: str, direction: str):
        file, where = edge.where(key)
        node, comp_name, port_name = _split_port(text)
        if node not in nodes:
            errors.append(AppError(file, where, f"unknown node {node!r}{near(node, nodes)}"))
            return None
        if comp_name not in nodes[node]:
            errors.append(AppError(file, where, f"node {node!r} has no component {comp_name!r}"
                                                f"{near(comp_name, nodes[node])}"))
            return None
        cls = types.get(f"{node}/{comp_name}")
        if cls is None:
            return None
        ports = {n: p for n, p in cls.ports().items() if p.direction == direction}
        if port_name not in ports:
            other = "input" if direction == "tx" else "output"
            kind = "output (Tx)" if direction == "tx" else "input (Rx)"
            if port_name in cls.ports():
                msg = f"{port_name!r} of {nodes[node][comp_name].type} is an {other}, expected an {kind}"
            else:
                msg = (f"{nodes[node][comp_name].type} has no {kind} port {port_name!r}"
                       f"{near(port_name, ports) or f' (it has: {sorted(ports)})'}")
            errors.append(AppError(file, where, msg))
            return None
        return ports[port_name]

    # edges --------------------------------------------------------------------------------------
    def config_values(endpoint: str) -> dict:
        node, comp_name, _ = _split_port(endpoint)
        return {key: entry.value for key, entry in spec.config.get((node, comp_name), {}).items()}

    pairs = set()
    for edge in spec.edges:
        tx = port(edge.source, edge, "source", "tx")
        rx = port(edge.target, edge, "target", "rx")
        if (edge.source, edge.target) in pairs:
            errors.append(AppError(edge.file, edge.path, f"duplicate edge {edge.source} -> {edge.target}"))
        pairs.add((edge.source, edge.target))
        sent = carried(types.get(edge.source.rsplit("/", 1)[0]), edge.source, tx, config_values(edge.source))
        expected = carried(types.get(edge.target.rsplit("/", 1)[0]), edge.target, rx, config_values(edge.target))
        if sent is not None and expected is not None and not issubclass(sent, expected):
            if sent.wire_name == expected.wire_name:  # one declaration, imported under two module names
                errors.append(AppError(edge.file, edge.path, f"message type {sent.wire_name} of {edge.source} "
                                       f"(module {sent.__module__}) is not the one {edge.target} expects "
                                       f"(module {expected.__module__}): the same file was loaded as two "
                                       f"modules; import it by one name everywhere"))
            else:
                errors.append(AppError(edge.file, edge.path, f"message type mismatch: {edge.source} publishes "
                                       f"{sent.wire_name}, but {edge.target} expects {expected.wire_name}"))
        size = (edge.queue or {}).get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_QUEUE):
            file, where = edge.where("queue")
            errors.append(AppError(file, where + ".size",
                                   f"expected a whole number of messages in [1, {MAX_QUEUE}], got {size!r}"))
    errors += _cycle_errors(spec.edges)

    # config -------------------------------------------------------------------------------------
    def component_of(node: str, comp_name: str, file: str, node_path: str, comp_path: str):
        if node not in nodes:
            errors.append(AppError(file, node_path, f"config for unknown node {node!r}{near(node, nodes)}"))
            return None
        if comp_name not in nodes[node]:
            errors.append(AppError(file, comp_path, f"config for unknown component {node}/{comp_name}"
                                                    f"{near(comp_name, nodes[node])}"))
            return None
        return types.get(f"{node}/{comp_name}")

    def param_of(cls, node: str, comp_name: str, param: str, file: str, path: str) -> Param | None:
        params = cls.params()
        if param not in params:
            errors.append(AppError(file, path, f"{nodes[node][comp_name].type} has no param {param!r}"
                                               f"{near(param, params) or f' (it has: {sorted(params)})'}"))
            return None
        return params[param]

    for (node, comp_name), values in spec.config.items():
        cls = component_of(node, comp_name, *spec.config_origins[(node, comp_name)])
        if cls is None:
            continue
        for name, entry in values.items():
            declared = param_of(cls, node, comp_name, name, entry.file, entry.path)
            if declared is None:
                continue
            try:
                declared.parse_text(entry.value) if entry.text else declared.convert(entry.value)
            except ValueError as exc:
                errors.append(AppError(entry.file, entry.path, f"{name}: {exc}"))

    for comp in spec.components:
        cls = types.get(comp.full_name)
        if cls is None:
            continue
        given = spec.config.get((comp.node, comp.name), {})
        for name, declared in cls.params().items():
            if declared.required and name not in given:
                errors.append(AppError(comp.file, comp.path, f"required param {name!r} of {comp.type} is not set "
                                       f"(config.{comp.node}.{comp.name}.{name}: {declared.doc})"))

    # io and ui sections -------------------------------------------------------------------------
    for key, targets in spec.io.items():
        for target in targets:
            node, comp_name, name = _split_port(target)
            cls = component_of(node, comp_name, spec.file, f"$.io.{key}", f"$.io.{key}")
            if cls is not None:
                param_of(cls, node, comp_name, name, spec.file, f"$.io.{key}")
    for window, body in spec.ui_config.get("windows", {}).items():
        for i, channel in enumerate(body.get("channels", [])):
            edge = EdgeSpec(channel["name"], "", spec.file, f"$.ui_config.windows.{window}.channels[{i}]")
            port(channel["name"], edge, "name", "tx")
    return errors
