"""graphflow and its packs run on Python 3.10 (JetPack 6's Python): checked statically, since no
3.10 interpreter runs the suite. Every Python file of the repo must parse with 3.10's grammar
(no ``except*``, no ``type X = ...``, no PEP 695 generics), use no 3.11+ standard library name
without a fallback, and pass vermin with a 3.10 target."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# Standard library names new in 3.11 or later (module, attribute); the usual suspects.
NEWER = {
    ("typing", "Self"), ("typing", "LiteralString"), ("typing", "Never"), ("typing", "assert_never"),
    ("typing", "reveal_type"), ("typing", "TypeVarTuple"), ("typing", "Unpack"), ("typing", "Required"),
    ("typing", "NotRequired"), ("typing", "override"), ("typing", "dataclass_transform"),
    ("enum", "StrEnum"), ("enum", "verify"), ("datetime", "UTC"), ("hashlib", "file_digest"),
    ("asyncio", "TaskGroup"), ("asyncio", "timeout"), ("itertools", "batched"), ("contextlib", "chdir"),
    ("operator", "call"),
}
NEWER_MODULES = {"tomllib", "wsgiref.types"}


def python_files() -> list[Path]:
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                             "*.py"], capture_output=True, check=True).stdout.decode()
    return [REPO / name for name in listed.split("\0") if name and (REPO / name).is_file()]


def guarded_by_import_error(tree: ast.AST) -> set[int]:
    """Line numbers of imports inside a ``try`` whose handlers catch ImportError (a fallback)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            for inner in node.body:
                lines |= {n.lineno for n in ast.walk(inner) if hasattr(n, "lineno")}
    return lines


def problems_in(path: Path, source: str) -> list[str]:
    try:
        tree = ast.parse(source, str(path), feature_version=(3, 10))
    except SyntaxError as exc:
        return [f"{path}:{exc.lineno}: not Python 3.10 syntax: {exc.msg}"]
    guarded = guarded_by_import_error(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{path}:{node.lineno}: module {a.name} is new in 3.11+ (add a fallback)"
                      for a in node.names if a.name in NEWER_MODULES and node.lineno not in guarded]
        elif isinstance(node, ast.ImportFrom) and node.lineno not in guarded:
            if node.module in NEWER_MODULES:
                found.append(f"{path}:{node.lineno}: module {node.module} is new in 3.11+ (add a fallback)")
            found += [f"{path}:{node.lineno}: {node.module}.{a.name} is new in 3.11+"
                      for a in node.names if (node.module, a.name) in NEWER]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                (node.value.id, node.attr) in NEWER and node.lineno not in guarded:
            found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr} is new in 3.11+")
    return found


@pytest.mark.timeout(120)
def test_every_python_file_is_python_310():
    files = python_files()
    assert len(files) > 50 and REPO / "graphflow" / "scheduler.py" in files
    problems = [p for path in files for p in problems_in(path.relative_to(REPO), path.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source, expected", [
    ("try:\n    pass\nexcept* ValueError:\n    pass\n", "not Python 3.10 syntax"),
    ("type Alias = int\n", "not Python 3.10 syntax"),
    ("def f[T](x: T) -> T:\n    return x\n", "not Python 3.10 syntax"),
    ("from typing import Self\n", "typing.Self is new"),
    ("import tomllib\n", "module tomllib is new"),
    ("import enum\nclass E(enum.StrEnum):\n    A = 'a'\n", "enum.StrEnum is new"),
    ("try:\n    import tomllib\nexcept ImportError:\n    import tomli as tomllib\n", None),
    ("match x:\n    case 1:\n        pass\n", None),  # 3.10 has match
])
def test_the_check_catches_311_only_code(source, expected):
    found = problems_in(Path("example.py"), source)
    assert (expected is None and not found) or (expected is not None and len(found) == 1 and expected in found[0]), found


@pytest.mark.timeout(120)
def test_vermin_finds_nothing_newer_than_310():
    """vermin (a dev dependency) knows the whole standard library's history."""
    files = [str(p) for p in python_files()]
    result = subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--target=3.10-", "--no-tips", "--violations",
                             "--eval-annotations", "--backport", "dataclasses", *files],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
