"""Reading, composing and validating app files, before anything runs.

Order: JSON syntax (line and column) → JSON Schema (``schemas/app.schema.json``) → subgraph
expansion (names prefixed ``<node>.``, interface channels forwarded) → config overlays
(``--config``, then ``--set``; later wins) → the graph against the node declarations (types,
ports, edge message types, params, ranges, required params).

Every problem becomes one :class:`AppError` line: file, JSON path, what was expected, and the
nearest names when something looks misspelt. All problems are reported at once.
"""
from __future__ import annotations

import copy
import difflib
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from .params import Param
from .registry import PackNotFound, Registry

INTERFACE_TYPE = "Subgraph"  # the pseudo component through which a subgraph's channels pass
COMMAND_LINE = "<command line>"


@dataclass(frozen=True)
class AppError:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}"


class AppInvalid(Exception):
    def __init__(self, errors: list[AppError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass
class ComponentSpec:
    node: str
    name: str
    type: str
    file: str
    path: str
    on_error: str = "stop"

    @property
    def full_name(self) -> str:
        return f"{self.node}/{self.name}"


@dataclass
class EdgeSpec:
    source: str
    target: str
    file: str
    path: str
    queue: dict | None = None


@dataclass
class ConfigValue:
    value: Any
    file: str
    path: str


@dataclass
class AppSpec:
    """A composed, validated app: what :func:`graphflow.app.App` builds."""
    name: str
    file: str
    modules: list[tuple[str, Path, str, str]] = field(default_factory=list)  # name, base dir, file, path
    components: list[ComponentSpec] = field(default_factory=list)
    edges: list[EdgeSpec] = field(default_factory=list)
    config: dict[tuple[str, str], dict[str, ConfigValue]] = field(default_factory=dict)
    config_origins: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)  # file, node path, component path
    io: dict[str, list[str]] = field(default_factory=dict)  # "input"/"output" -> param paths
    ui_config: dict = field(default_factory=dict)
    types: dict[str, type] = field(default_factory=dict)  # component full name -> class, after validation

    def params_of(self, full_name: str) -> dict[str, Any]:
        node, name = full_name.split("/", 1)
        return {key: v.value for key, v in self.config.get((node, name), {}).items()}


# The repo's schemas/ folder; an installed wheel carries it as graphflow/schemas (setup.py).
_PACKAGE = Path(__file__).resolve().parent
SCHEMA_DIR = _PACKAGE / "schemas" if (_PACKAGE / "schemas").is_dir() else _PACKAGE.parent / "schemas"


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / "app.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def read_json(path: Path, what: str = "app file") -> Any:
    """Parse JSON, or raise AppInvalid naming the line and column of the syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AppInvalid([AppError(str(path), "$", f"{what} not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AppInvalid([AppError(str(path), "$", f"cannot read {what}: {exc}")]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AppInvalid([AppError(f"{path}:{exc.lineno}:{exc.colno}", "$",
                                   f"invalid JSON: {exc.msg}")]) from None


def _json_path(parts) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _near(name: str, candidates) -> str:
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
        hint = _near(extra[0], allowed) if extra else ""
        return f"unknown key {extra[0]!r}{hint or f' (allowed: {allowed})'}" if extra else error.message
    if error.validator == "pattern":
        return f"{error.instance!r} does not have the form {error.schema.get('description', error.validator_value)}"
    if error.validator == "required":
        return f"missing required key {error.message.split(chr(39))[1]!r}"
    return error.message


class _Composer:
    """Expands subgraphs and collects components, edges and config with their origins."""

    def __init__(self):
        self.errors: list[AppError] = []
        self.spec: AppSpec | None = None
        self._stack: list[Path] = []

    def compose(self, path: Path) -> AppSpec:
        data = read_json(path)
        self.spec = AppSpec(name=str(data.get("name", path.stem)) if isinstance(data, dict) else path.stem,
                            file=str(path))
        self._add_file(path, data, prefix="")
        if isinstance(data, dict) and not self.errors:
            self.spec.io = {key: [value] if isinstance(value, str) else list(value)
                            for key, value in data.get("io", {}).items()}
            self.spec.ui_config = copy.deepcopy(data.get("ui_config", {}))
        return self.spec

    def _add_file(self, path: Path, data: Any, prefix: str) -> None:
        file = str(path)
        errors = schema_errors(data, file)
        if errors:
            self.errors += errors
            return
        self._stack.append(path.resolve())
        base = path.parent
        for index, module in enumerate(data.get("modules", [])):
            self.spec.modules.append((module, base, file, f"$.modules[{index}]"))
        graph = data["graph"]
        for i, node in enumerate(graph.get("nodes", [])):
            node_name = prefix + node["name"]
            if "subgraph" in node:
                self._add_subgraph(base, node, node_name, file, f"$.graph.nodes[{i}].subgraph")
                continue
            for j, comp in enumerate(node["components"]):
                self.spec.components.append(ComponentSpec(
                    node_name, comp["name"], comp["type"], file, f"$.graph.nodes[{i}].components[{j}]",
                    node.get("on_error", "stop")))
        for i, edge in enumerate(graph.get("edges", [])):
            self.spec.edges.append(EdgeSpec(prefix + edge["source"], prefix + edge["target"], file,
                                            f"$.graph.edges[{i}]", edge.get("queue")))
        for node_name, components in data.get("config", {}).items():
            for comp_name, params in components.items():
                self.note_config(prefix + node_name, comp_name, file, f"$.config.{node_name}",
                                 f"$.config.{node_name}.{comp_name}")
                for param, value in params.items():
                    self.set_config(prefix + node_name, comp_name, param,
                                    ConfigValue(value, file, f"$.config.{node_name}.{comp_name}.{param}"))
        self._stack.pop()

    def _add_subgraph(self, base: Path, node: dict, node_name: str, file: str, path: str) -> None:
        sub_path = (base / node["subgraph"])
        if not sub_path.exists() and Path(node["subgraph"]).exists():
            sub_path = Path(node["subgraph"])  # also accept paths relative to the working directory
        if not sub_path.exists():
            self.errors.append(AppError(file, path, f"subgraph file {node['subgraph']!r} not found "
                                                    f"(looked in {base} and the working directory)"))
            return
        if sub_path.resolve() in self._stack:
            self.errors.append(AppError(file, path, f"subgraph {node['subgraph']!r} includes itself"))
            return
        try:
            data = read_json(sub_path, "subgraph file")
        except AppInvalid as exc:
            self.errors += exc.errors
            return
        self._add_file(sub_path, data, prefix=node_name + ".")

    def note_config(self, node: str, component: str, file: str, node_path: str, component_path: str) -> None:
        self.spec.config.setdefault((node, component), {})
        self.spec.config_origins.setdefault((node, component), (file, node_path, component_path))

    def set_config(self, node: str, component: str, param: str, value: ConfigValue) -> None:
        self.spec.config.setdefault((node, component), {})[param] = value


def _split_port(text: str) -> tuple[str, str, str]:
    node, component, port = text.rsplit("/", 2)
    return node, component, port


def _collapse_interfaces(spec: AppSpec) -> list[AppError]:
    """Replace every path through a Subgraph interface by direct edges (repeatedly, for nesting).

    An edge from outside a subgraph must name a channel the subgraph forwards."""
    interfaces = {c.full_name: c for c in spec.components if c.type == INTERFACE_TYPE}
    if not interfaces:
        return []
    errors = []
    for edge in spec.edges:
        for key, endpoint, inner_key in (("target", edge.target, "source"), ("source", edge.source, "target")):
            owner, port_name = endpoint.rsplit("/", 1)
            interface = interfaces.get(owner)
            if interface is None or edge.file == interface.file:
                continue
            forwarded = {getattr(e, inner_key).rsplit("/", 1)[1] for e in spec.edges
                         if e.file == interface.file and getattr(e, inner_key).rsplit("/", 1)[0] == owner}
            if port_name not in forwarded:
                direction = "input" if key == "target" else "output"
                errors.append(AppError(edge.file, f"{edge.path}.{key}",
                                       f"subgraph interface {owner} has no {direction} {port_name!r}"
                                       f"{_near(port_name, forwarded) or f' (it has: {sorted(forwarded)})'}"))
    for _ in range(len(interfaces) + 1):
        through = [e for e in spec.edges if e.target.rsplit("/", 1)[0] in interfaces]
        if not through:
            break
        kept = [e for e in spec.edges if e.target.rsplit("/", 1)[0] not in interfaces]
        resolved = []
        for inbound in through:
            for out in (e for e in kept + through if e.source == inbound.target):
                resolved.append(EdgeSpec(inbound.source, out.target, inbound.file, inbound.path,
                                         out.queue or inbound.queue))
        spec.edges = [e for e in kept if e.source.rsplit("/", 1)[0] not in interfaces] + resolved
    spec.edges = [e for e in spec.edges if e.source.rsplit("/", 1)[0] not in interfaces]
    spec.components = [c for c in spec.components if c.type != INTERFACE_TYPE]
    return errors


def _apply_overlays(composer: _Composer, overlays: list[Path], sets: list[str]) -> list[tuple]:
    """Merge ``--config`` files, then keep ``--set`` texts for typing once params are known."""
    for overlay in overlays:
        try:
            data = read_json(overlay, "config file")
        except AppInvalid as exc:
            composer.errors += exc.errors
            continue
        if isinstance(data, dict) and set(data) >= {"graph"}:
            data = data.get("config", {})  # an app file used as an overlay: take its config
        if not isinstance(data, dict):
            composer.errors.append(AppError(str(overlay), "$", "expected an object: node -> component -> param -> value"))
            continue
        for node, components in data.items():
            if not isinstance(components, dict):
                composer.errors.append(AppError(str(overlay), f"$.{node}", "expected an object: component -> param -> value"))
                continue
            for comp, params in components.items():
                if not isinstance(params, dict):
                    composer.errors.append(AppError(str(overlay), f"$.{node}.{comp}", "expected an object: param -> value"))
                    continue
                composer.note_config(node, comp, str(overlay), f"$.{node}", f"$.{node}.{comp}")
                for param, value in params.items():
                    composer.set_config(node, comp, param, ConfigValue(value, str(overlay), f"$.{node}.{comp}.{param}"))
    parsed = []
    for text in sets:
        key, sep, value = text.partition("=")
        parts = key.rsplit("/", 2)
        if not sep or len(parts) != 3 or not all(parts):
            composer.errors.append(AppError(COMMAND_LINE, f"--set {text}", "expected node/component/param=value"))
            continue
        parsed.append((parts[0], parts[1], parts[2], value, text))
    return parsed


def load_app(path: str | Path, overlays: list[str | Path] = (), sets: list[str] = (),
             registry: Registry | None = None) -> AppSpec:
    """Compose and validate an app; raises :class:`AppInvalid` listing every problem."""
    path = Path(path)
    composer = _Composer()
    spec = composer.compose(path)
    if composer.errors:
        raise AppInvalid(composer.errors)
    set_texts = _apply_overlays(composer, [Path(p) for p in overlays], list(sets))
    composer.errors += _collapse_interfaces(spec)
    registry = registry or Registry()
    errors = composer.errors + _validate(spec, registry, set_texts, composer)
    if errors:
        raise AppInvalid(errors)
    return spec


def _carried(spec: AppSpec, endpoint: str, port) -> type | None:
    """The message type a port carries: its declaration's, or for a bridge (net.Publisher,
    net.Subscriber) the one its params name (``port_message_type``)."""
    node, component, name = _split_port(endpoint)
    hook = getattr(spec.types.get(f"{node}/{component}"), "port_message_type", None)
    if port is None or hook is None:
        return port and port.message_type
    params = {key: entry.value for key, entry in spec.config.get((node, component), {}).items()}
    return hook(name, params)  # None: its params do not name one (that param's error says so)


def _validate(spec: AppSpec, registry: Registry, set_texts: list[tuple], composer: _Composer) -> list[AppError]:
    errors: list[AppError] = []
    for name, base, file, path in spec.modules:
        try:
            registry.load_pack(name, base)
        except PackNotFound as exc:
            errors.append(AppError(file, path, str(exc)))
        except Exception as exc:
            errors.append(AppError(file, path, f"node pack {name!r} failed to import: {type(exc).__name__}: {exc}"))

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
            hint = _near(comp.type, registry.types)
            if not hint and pack not in registry.packs and "." in comp.type:
                hint = f"; is {pack!r} missing from modules?"
            errors.append(AppError(comp.file, comp.path + ".type", f"unknown node type {comp.type!r}{hint}"))
        else:
            spec.types[comp.full_name] = cls

    def port(text: str, edge: EdgeSpec, key: str, direction: str):
        where = f"{edge.path}.{key}"
        node, comp_name, port_name = _split_port(text)
        if node not in nodes:
            errors.append(AppError(edge.file, where, f"unknown node {node!r}{_near(node, nodes)}"))
            return None
        if comp_name not in nodes[node]:
            errors.append(AppError(edge.file, where, f"node {node!r} has no component {comp_name!r}"
                                                     f"{_near(comp_name, nodes[node])}"))
            return None
        cls = spec.types.get(f"{node}/{comp_name}")
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
                       f"{_near(port_name, ports) or f' (it has: {sorted(ports)})'}")
            errors.append(AppError(edge.file, where, msg))
            return None
        return ports[port_name]

    # edges --------------------------------------------------------------------------------------
    pairs = set()
    for edge in spec.edges:
        tx = port(edge.source, edge, "source", "tx")
        rx = port(edge.target, edge, "target", "rx")
        if (edge.source, edge.target) in pairs:
            errors.append(AppError(edge.file, edge.path, f"duplicate edge {edge.source} -> {edge.target}"))
        pairs.add((edge.source, edge.target))
        sent, expected = (_carried(spec, edge.source, tx), _carried(spec, edge.target, rx))
        if sent is not None and expected is not None and not issubclass(sent, expected):
            if sent.wire_name == expected.wire_name:  # one declaration, imported under two module names
                errors.append(AppError(edge.file, edge.path, f"message type {sent.wire_name} of {edge.source} "
                                       f"(module {sent.__module__}) is not the one {edge.target} expects "
                                       f"(module {expected.__module__}): the same file was loaded as two "
                                       f"modules; import it by one name everywhere"))
            else:
                errors.append(AppError(edge.file, edge.path, f"message type mismatch: {edge.source} publishes "
                                       f"{sent.wire_name}, but {edge.target} expects {expected.wire_name}"))

    # config -------------------------------------------------------------------------------------
    def component_of(node: str, comp_name: str, file: str, node_path: str, comp_path: str):
        if node not in nodes:
            errors.append(AppError(file, node_path, f"config for unknown node {node!r}{_near(node, nodes)}"))
            return None
        if comp_name not in nodes[node]:
            errors.append(AppError(file, comp_path, f"config for unknown component {node}/{comp_name}"
                                                    f"{_near(comp_name, nodes[node])}"))
            return None
        return spec.types.get(f"{node}/{comp_name}")

    def param_of(cls, node: str, comp_name: str, param: str, file: str, path: str) -> Param | None:
        params = cls.params()
        if param not in params:
            errors.append(AppError(file, path, f"{nodes[node][comp_name].type} has no param {param!r}"
                                               f"{_near(param, params) or f' (it has: {sorted(params)})'}"))
            return None
        return params[param]

    for (node, comp_name), values in spec.config.items():
        cls = component_of(node, comp_name, *spec.config_origins[(node, comp_name)])
        if cls is None:
            continue
        for name, entry in list(values.items()):
            declared = param_of(cls, node, comp_name, name, entry.file, entry.path)
            if declared is None:
                continue
            try:
                entry.value = declared.convert(entry.value)
            except ValueError as exc:
                errors.append(AppError(entry.file, entry.path, f"{name}: {exc}"))
    for node, comp_name, name, text, original in set_texts:
        where = f"--set {original}"
        cls = component_of(node, comp_name, COMMAND_LINE, where, where)
        declared = cls and param_of(cls, node, comp_name, name, COMMAND_LINE, where)
        if declared is None:
            continue
        try:
            value = declared.parse_text(text)
        except ValueError as exc:
            errors.append(AppError(COMMAND_LINE, where, f"{name}: {exc}"))
            continue
        composer.set_config(node, comp_name, name, ConfigValue(value, COMMAND_LINE, where))

    for comp in spec.components:
        cls = spec.types.get(comp.full_name)
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
