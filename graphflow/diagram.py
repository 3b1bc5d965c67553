"""An app's wiring as Graphviz dot or Mermaid text."""
from __future__ import annotations

import re

from .loader import AppSpec


def _groups(spec: AppSpec) -> dict[str, list]:
    nodes: dict[str, list] = {}
    for component in spec.components:
        nodes.setdefault(component.node, []).append(component)
    return nodes


def _edge_label(spec: AppSpec, source: str, target: str) -> str:
    cls = spec.types.get(source.rsplit("/", 1)[0])
    port = cls.ports().get(source.rsplit("/", 1)[1]) if cls else None
    message = port.message_type.wire_name if port else "?"
    return f"{source.rsplit('/', 1)[1]} → {target.rsplit('/', 1)[1]} ({message})"


def _by_process(spec: AppSpec, processes: dict[str, str] | None) -> dict[str | None, dict[str | None, dict[str, list]]]:
    """{process (None: the app is one process): {subgraph (None: the app's own nodes): {node: components}}}.
    A subgraph's nodes are those written in another file than the app's, named ``<subgraph>.<node>``."""
    grouped: dict = {}
    for node, components in _groups(spec).items():
        subgraph = node.rsplit(".", 1)[0] if components[0].file != spec.file and "." in node else None
        process = processes.get(node) if processes else None
        grouped.setdefault(process, {}).setdefault(subgraph, {})[node] = components
    return grouped


def _crosses(edge, processes: dict[str, str] | None) -> bool:
    if not processes:
        return False
    source, target = (end.rsplit("/", 2)[0] for end in (edge.source, edge.target))
    return processes.get(source) != processes.get(target)


def to_dot(spec: AppSpec, processes: dict[str, str] | None = None) -> str:
    """``processes``: node → process, for an app split into processes (each a cluster of its
    nodes; the edges between processes dashed)."""
    lines = [f'digraph "{spec.name}" {{', "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    index = 0
    for process, subgraphs in _by_process(spec, processes).items():
        outer = "  " if process is None else "    "
        if process is not None:
            lines.append(f'  subgraph "cluster_process_{process}" {{')
            lines.append(f'    label="process {process}"; style=dashed;')
        for subgraph, nodes in subgraphs.items():
            indent = outer if subgraph is None else outer + "  "
            if subgraph is not None:
                lines.append(f'{outer}subgraph "cluster_subgraph_{subgraph}" {{')
                lines.append(f'{outer}  label="subgraph {subgraph}"; style=dotted;')
            for node, components in nodes.items():
                lines.append(f'{indent}subgraph "cluster_{index}" {{')
                lines.append(f'{indent}  label="{node}";')
                for c in components:
                    lines.append(f'{indent}  "{c.full_name}" [label="{c.name}\\n{c.type}"];')
                lines.append(f"{indent}}}")
                index += 1
            if subgraph is not None:
                lines.append(f"{outer}}}")
        if process is not None:
            lines.append("  }")
    for edge in spec.edges:
        style = ", style=dashed" if _crosses(edge, processes) else ""
        lines.append(f'  "{edge.source.rsplit("/", 1)[0]}" -> "{edge.target.rsplit("/", 1)[0]}" '
                     f'[label="{_edge_label(spec, edge.source, edge.target)}"{style}];')
    lines.append("}")
    return "\n".join(lines)


def to_mermaid(spec: AppSpec, processes: dict[str, str] | None = None) -> str:
    def ident(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", name)

    lines = ["flowchart LR"]
    for process, subgraphs in _by_process(spec, processes).items():
        outer = "  " if process is None else "    "
        if process is not None:
            lines.append(f'  subgraph {ident("p_" + process)}["process {process}"]')
        for subgraph, nodes in subgraphs.items():
            indent = outer if subgraph is None else outer + "  "
            if subgraph is not None:
                lines.append(f'{outer}subgraph {ident("s_" + subgraph + "_" + (process or ""))}["subgraph {subgraph}"]')
            for node, components in nodes.items():
                lines.append(f'{indent}subgraph {ident("n_" + node)}["{node}"]')
                for c in components:
                    lines.append(f'{indent}  {ident(c.full_name)}["{c.name}<br/>{c.type}"]')
                lines.append(f"{indent}end")
            if subgraph is not None:
                lines.append(f"{outer}end")
        if process is not None:
            lines.append("  end")
    for edge in spec.edges:
        opening, arrow = ("-.", ".->") if _crosses(edge, processes) else ("--", "-->")  # (dotted: between processes)
        lines.append(f'  {ident(edge.source.rsplit("/", 1)[0])} {opening} "{_edge_label(spec, edge.source, edge.target)}" '
                     f'{arrow} {ident(edge.target.rsplit("/", 1)[0])}')
    return "\n".join(lines)
