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


def to_dot(spec: AppSpec) -> str:
    lines = [f'digraph "{spec.name}" {{', "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for index, (node, components) in enumerate(_groups(spec).items()):
        lines.append(f'  subgraph "cluster_{index}" {{')
        lines.append(f'    label="{node}";')
        for c in components:
            lines.append(f'    "{c.full_name}" [label="{c.name}\\n{c.type}"];')
        lines.append("  }")
    for edge in spec.edges:
        lines.append(f'  "{edge.source.rsplit("/", 1)[0]}" -> "{edge.target.rsplit("/", 1)[0]}" '
                     f'[label="{_edge_label(spec, edge.source, edge.target)}"];')
    lines.append("}")
    return "\n".join(lines)


def to_mermaid(spec: AppSpec) -> str:
    def ident(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", name)

    lines = ["flowchart LR"]
    for node, components in _groups(spec).items():
        lines.append(f'  subgraph {ident("n_" + node)}["{node}"]')
        for c in components:
            lines.append(f'    {ident(c.full_name)}["{c.name}<br/>{c.type}"]')
        lines.append("  end")
    for edge in spec.edges:
        lines.append(f'  {ident(edge.source.rsplit("/", 1)[0])} -- "{_edge_label(spec, edge.source, edge.target)}" '
                     f'--> {ident(edge.target.rsplit("/", 1)[0])}')
    return "\n".join(lines)
