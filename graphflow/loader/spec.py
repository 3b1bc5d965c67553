"""What loading produces: problems (:class:`AppError`) or an immutable :class:`AppSpec`, and the
working form between the stages (:class:`Composition`)."""
from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

COMMAND_LINE = "<command line>"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
INTERFACE_TYPE = "Subgraph"  # the pseudo component through which a subgraph's channels pass

# The repo's schemas/ folder; an installed wheel carries it as graphflow/schemas (setup.py).
_PACKAGE = Path(__file__).resolve().parent.parent
SCHEMA_DIR = _PACKAGE / "schemas" if (_PACKAGE / "schemas").is_dir() else _PACKAGE.parent / "schemas"


@dataclass(frozen=True)
class AppError:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        """One line, whatever names the file held: control characters are escaped."""
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], f"{self.file}: {self.path}: {self.message}")


class AppInvalid(Exception):
    def __init__(self, errors: list[AppError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class EdgeSpec:
    source: str
    target: str
    file: str
    path: str
    queue: Mapping[str, Any] | None = None
    # Where the source, the target and the queue were written, when not at (file, path): an edge
    # through a subgraph interface joins edges of two files (see compose._collapse_interfaces).
    written: Mapping[str, tuple[str, str]] | None = None

    def where(self, part: str) -> tuple[str, str]:
        """(file, JSON path) of ``part``: "source", "target" or "queue" (its key appended)."""
        file, path = (self.written or {}).get(part, (self.file, self.path))
        return file, f"{path}.{part}"


@dataclass(frozen=True)
class ConfigValue:
    """A param's value as written, where it was written, and whether it is command-line text
    (``--set``: parsed by the param's declared type) or a JSON value."""
    value: Any
    file: str
    path: str
    text: bool = False


@dataclass
class Composition:
    """The composed app before validation: every component, edge and config value with its origin."""
    name: str
    file: str
    modules: list[tuple[str, Path, str, str]] = field(default_factory=list)  # name, base dir, file, JSON path
    components: list[ComponentSpec] = field(default_factory=list)
    edges: list[EdgeSpec] = field(default_factory=list)
    config: dict[tuple[str, str], dict[str, ConfigValue]] = field(default_factory=dict)
    config_origins: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)  # file, node path, component path
    io: dict[str, list[str]] = field(default_factory=dict)  # "input"/"output" -> param paths
    ui_config: dict = field(default_factory=dict)
    channel_aliases: dict[str, str] = field(default_factory=dict)  # subgraph interface output -> the channel it forwards
    errors: list[AppError] = field(default_factory=list)
    fatal: bool = False  # the errors leave nothing to validate (unreadable or schema-invalid files)

    def note_config(self, node: str, component: str, file: str, node_path: str, component_path: str) -> None:
        self.config.setdefault((node, component), {})
        self.config_origins.setdefault((node, component), (file, node_path, component_path))

    def set_config(self, node: str, component: str, param: str, value: ConfigValue) -> None:
        self.config.setdefault((node, component), {})[param] = value


@dataclass(frozen=True)
class AppSpec:
    """A composed, validated app, read-only: what :class:`graphflow.app.App` builds."""
    name: str
    file: str
    modules: tuple[tuple[str, str, str, str], ...]  # (pack as written, folder of the file naming it, that file, JSON path)
    components: tuple[ComponentSpec, ...]
    edges: tuple[EdgeSpec, ...]
    config: Mapping[str, Mapping[str, Any]]  # component full name -> param -> typed value
    types: Mapping[str, type]  # component full name -> class
    io: Mapping[str, tuple[str, ...]]
    ui_config: dict  # a copy: the viewer reads it as JSON
    # A subgraph's interface output ("pose.interface/subgraph/skeletons") -> the channel it forwards
    # ("pose.refine/refine_part_coordinates/skeletons_out"): users may name a channel either way.
    channel_aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def channel_name(self, name: str) -> str:
        """The channel ``name`` stands for: itself, or the channel a subgraph interface forwards."""
        return self.channel_aliases.get(name, name)

    def params_of(self, full_name: str) -> dict[str, Any]:
        return dict(self.config.get(full_name, {}))

    def with_params(self, values: Mapping[str, Mapping[str, Any]]) -> "AppSpec":
        """A copy with some params set (component full name -> param -> value), each converted
        by its declaration (which raises ValueError for a bad value)."""
        config = {name: dict(params) for name, params in self.config.items()}
        for full_name, params in values.items():
            declared = self.types[full_name].params()
            for param, value in params.items():
                config.setdefault(full_name, {})[param] = declared[param].convert(value)
        return dataclasses.replace(self, config=MappingProxyType(
            {name: MappingProxyType(params) for name, params in config.items()}))


def build_spec(composition: Composition, registry) -> AppSpec:
    """The immutable spec of a composition that validated without errors."""
    types = {c.full_name: registry.get(c.type) for c in composition.components}
    config = {}
    for (node, comp), values in composition.config.items():
        params = types[f"{node}/{comp}"].params()
        config[f"{node}/{comp}"] = MappingProxyType({
            name: params[name].parse_text(v.value) if v.text else params[name].convert(v.value)
            for name, v in values.items()})
    return AppSpec(
        name=composition.name, file=composition.file,
        modules=tuple((name, str(base), file, path) for name, base, file, path in composition.modules),
        components=tuple(composition.components),
        edges=tuple(EdgeSpec(e.source, e.target, e.file, e.path,
                             None if e.queue is None else MappingProxyType(dict(e.queue)), e.written)
                    for e in composition.edges),
        config=MappingProxyType(config), types=MappingProxyType(types),
        io=MappingProxyType({key: tuple(targets) for key, targets in composition.io.items()}),
        ui_config=copy.deepcopy(composition.ui_config),
        channel_aliases=MappingProxyType(dict(composition.channel_aliases)))
