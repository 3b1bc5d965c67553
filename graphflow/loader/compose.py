"""Stage 2: one flat graph. Subgraphs are expanded (inner names prefixed ``<node>.``, paths through
their ``interface`` component replaced by direct edges), then the config is layered: the app's,
each ``--config`` overlay, the ``io`` values (``--input``/``--output``), each ``--set``; later wins.
Each file is checked against the JSON Schema before it is composed (its shape is relied on)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .read import Sources
from .spec import COMMAND_LINE, INTERFACE_TYPE, AppError, Composition, ConfigValue, EdgeSpec, ComponentSpec
from .validate import near, schema_errors


def compose(sources: Sources, sets: list[str], io_values: dict[str, str]) -> Composition:
    app = sources.app
    data = sources.documents.get(_key(sources, app))
    composition = Composition(name=str(data.get("name", app.stem)) if isinstance(data, dict) else app.stem,
                              file=str(app), errors=list(sources.errors))
    if sources.errors:
        composition.fatal = True
        return composition
    _add_file(composition, sources, _key(sources, app), prefix="")
    if composition.errors:
        composition.fatal = True
        return composition
    composition.io = {key: [value] if isinstance(value, str) else list(value)
                      for key, value in data.get("io", {}).items()}
    composition.ui_config = copy.deepcopy(data.get("ui_config", {}))
    _apply_overlays(composition, sources.overlays)
    _refuse_io_also_set(composition, io_values, sets)
    set_texts = _io_sets(composition, io_values) + list(sets)
    _apply_sets(composition, set_texts)
    composition.channel_aliases = _interface_outputs(composition)
    composition.errors += _collapse_interfaces(composition)
    for body in composition.ui_config.get("windows", {}).values():
        for channel in body.get("channels", []) if isinstance(body, dict) else []:
            if isinstance(channel, dict) and channel.get("name") in composition.channel_aliases:
                channel["name"] = composition.channel_aliases[channel["name"]]
    return composition


def _key(sources: Sources, path: Path) -> Path:
    for resolved, name in sources.names.items():
        if name == path:
            return resolved
    return path


def _add_file(composition: Composition, sources: Sources, key: Path, prefix: str) -> None:
    path = sources.names[key]
    data = sources.documents[key]
    file = str(path)
    errors = schema_errors(data, file)
    if errors:
        composition.errors += errors
        return
    for index, module in enumerate(data.get("modules", [])):
        composition.modules.append((module, path.parent, file, f"$.modules[{index}]"))
    graph = data["graph"]
    for i, node in enumerate(graph.get("nodes", [])):
        node_name = prefix + node["name"]
        if "subgraph" in node:
            inner = sources.subgraphs.get((key, node["subgraph"]))
            if inner is not None and inner in sources.documents:
                _add_file(composition, sources, inner, prefix=node_name + ".")
            continue
        for j, comp in enumerate(node["components"]):
            composition.components.append(ComponentSpec(
                node_name, comp["name"], comp["type"], file, f"$.graph.nodes[{i}].components[{j}]",
                node.get("on_error", "stop")))
    for i, edge in enumerate(graph.get("edges", [])):
        composition.edges.append(EdgeSpec(prefix + edge["source"], prefix + edge["target"], file,
                                          f"$.graph.edges[{i}]", edge.get("queue")))
    for node_name, components in data.get("config", {}).items():
        for comp_name, params in components.items():
            composition.note_config(prefix + node_name, comp_name, file, f"$.config.{node_name}",
                                    f"$.config.{node_name}.{comp_name}")
            for param, value in params.items():
                composition.set_config(prefix + node_name, comp_name, param,
                                       ConfigValue(value, file, f"$.config.{node_name}.{comp_name}.{param}"))


def _apply_overlays(composition: Composition, overlays: list[tuple[Path, Any]]) -> None:
    """Merge ``--config`` files: node -> component -> param -> value (or an app file: its config)."""
    for overlay, data in overlays:
        file = str(overlay)
        if isinstance(data, dict) and "graph" in data:
            data = data.get("config", {})  # an app file used as an overlay: take its config
        if not isinstance(data, dict):
            composition.errors.append(AppError(file, "$", "expected an object: node -> component -> param -> value"))
            continue
        for node, components in data.items():
            if not isinstance(components, dict):
                composition.errors.append(AppError(file, f"$.{node}", "expected an object: component -> param -> value"))
                continue
            for comp, params in components.items():
                if not isinstance(params, dict):
                    composition.errors.append(AppError(file, f"$.{node}.{comp}", "expected an object: param -> value"))
                    continue
                composition.note_config(node, comp, file, f"$.{node}", f"$.{node}.{comp}")
                for param, value in params.items():
                    composition.set_config(node, comp, param, ConfigValue(value, file, f"$.{node}.{comp}.{param}"))


def _io_sets(composition: Composition, io_values: dict[str, str]) -> list[str]:
    """``--input``/``--output``: ``--set`` texts for the params the app's ``io`` section names."""
    sets = []
    for key, value in io_values.items():
        if value is None:
            continue
        targets = composition.io.get(key)
        if not targets:
            composition.errors.append(AppError(composition.file, "$.io",
                                               f"no '{key}' entry, so --{key} has nothing to set"))
            continue
        sets += [f"{target}={value}" for target in targets]
    return sets


def _refuse_io_also_set(composition: Composition, io_values: dict[str, str], sets: list[str]) -> None:
    """``--input X`` and ``--set`` of the very param it sets: one of them would be ignored in silence."""
    for key, value in io_values.items():
        targets = set(composition.io.get(key, ())) if value is not None else set()
        for text in sets:
            param, sep, _ = text.partition("=")
            if sep and param in targets:
                composition.errors.append(AppError(COMMAND_LINE, f"--set {text}",
                                                   f"sets the param --{key} sets (the app's io.{key}): give one of them"))


def _apply_sets(composition: Composition, sets: list[str]) -> None:
    """``--set node/component/param=value``: kept as text, typed by the param's declaration in
    validation."""
    for text in sets:
        key, sep, value = text.partition("=")
        parts = key.rsplit("/", 2)
        where = f"--set {text}"
        if not sep or len(parts) != 3 or not all(parts):
            composition.errors.append(AppError(COMMAND_LINE, where, "expected node/component/param=value"))
            continue
        node, comp, param = parts
        composition.note_config(node, comp, COMMAND_LINE, where, where)
        composition.set_config(node, comp, param, ConfigValue(value, COMMAND_LINE, where, text=True))


def _origin(edge: EdgeSpec, part: str) -> tuple[str, str]:
    """(file, JSON path) of the edge that wrote ``part`` of ``edge``."""
    return (edge.written or {}).get(part, (edge.file, edge.path))


def _interface_outputs(composition: Composition) -> dict[str, str]:
    """Each subgraph interface port that one channel feeds (through nested interfaces too) ->
    that channel. (Before the interfaces collapse: afterwards only the edges to real inputs are left.)"""
    interfaces = {c.full_name for c in composition.components if c.type == INTERFACE_TYPE}
    feeds: dict[str, list[str]] = {}
    for edge in composition.edges:
        if edge.target.rsplit("/", 1)[0] in interfaces:
            feeds.setdefault(edge.target, []).append(edge.source)
    aliases = {}
    for port, sources in feeds.items():
        seen = {port}
        source = sources[0] if len(sources) == 1 else None  # a port fed by several channels names none
        while source is not None and source in feeds and source not in seen:
            seen.add(source)
            source = feeds[source][0] if len(feeds[source]) == 1 else None
        if source is not None and source.rsplit("/", 1)[0] not in interfaces:
            aliases[port] = source
    return aliases


def _collapse_interfaces(composition: Composition) -> list[AppError]:
    """Replace every path through a Subgraph interface by direct edges (repeatedly, for nesting).

    An edge from outside a subgraph must name a channel the subgraph forwards."""
    interfaces = {c.full_name: c for c in composition.components if c.type == INTERFACE_TYPE}
    if not interfaces:
        return []
    errors = []
    edges = composition.edges
    for edge in edges:
        for key, endpoint, inner_key in (("target", edge.target, "source"), ("source", edge.source, "target")):
            owner, port_name = endpoint.rsplit("/", 1)
            interface = interfaces.get(owner)
            if interface is None or edge.file == interface.file:
                continue
            forwarded = {getattr(e, inner_key).rsplit("/", 1)[1] for e in edges
                         if e.file == interface.file and getattr(e, inner_key).rsplit("/", 1)[0] == owner}
            if port_name not in forwarded:
                direction = "input" if key == "target" else "output"
                errors.append(AppError(edge.file, f"{edge.path}.{key}",
                                       f"subgraph interface {owner} has no {direction} {port_name!r}"
                                       f"{near(port_name, forwarded) or f' (it has: {sorted(forwarded)})'}"))
    leaving: dict[str, list[EdgeSpec]] = {}  # interface port -> the edges out of it
    for edge in edges:
        if edge.source.rsplit("/", 1)[0] in interfaces:
            leaving.setdefault(edge.source, []).append(edge)

    def ends(port: str, hops: list[EdgeSpec]):
        """The hops from ``hops[0]``'s source through interface ports to each real input."""
        if port.rsplit("/", 1)[0] not in interfaces:
            yield hops
            return
        for out in leaving.get(port, ()):
            if out.target in {hop.target for hop in hops}:  # interface ports that only feed each other
                error = AppError(out.file, out.path, f"edge {out.source} -> {out.target} closes a loop of "
                                                     f"subgraph interface ports that no component is on")
                errors.extend([error] if error not in errors else [])
                continue
            yield from ends(out.target, hops + [out])

    resolved = []
    for edge in edges:
        if edge.source.rsplit("/", 1)[0] in interfaces:
            continue  # reached from the real output that feeds the port
        for hops in ends(edge.target, [edge]):
            # Named by the edge that joins two interface ports where there is one (the unusual edge
            # a cycle comes from), else by the first; the queue is the last one given.
            joining = [h for h in hops if h.source.rsplit("/", 1)[0] in interfaces
                       and h.target.rsplit("/", 1)[0] in interfaces]
            named = (joining or hops)[0]
            queued = next((h for h in reversed(hops) if h.queue), hops[-1])
            written = {"source": _origin(hops[0], "source"), "target": _origin(hops[-1], "target"),
                       "queue": _origin(queued, "queue")}
            resolved.append(EdgeSpec(edge.source, hops[-1].target, named.file, named.path, queued.queue, written))
    composition.edges = resolved
    composition.components = [c for c in composition.components if c.type != INTERFACE_TYPE]
    return errors
