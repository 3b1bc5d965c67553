"""Files: writing outputs so a reader never sees half of one, and content hashes."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


# Set in the environment of a process that a split app's supervisor started again after it failed
# ("restart": true): its writers add to what the run before wrote instead of starting over.
RESUMING_ENV = "GRAPHFLOW_RESUMING"


def resuming() -> bool:
    """Whether this process continues the work of one that failed (see RESUMING_ENV)."""
    return os.environ.get(RESUMING_ENV) == "1"


def open_lines(path: Path, *, append: bool) -> BinaryIO:
    """A lines file (JSON Lines) opened to write: new, or with ``append`` after its last whole line
    (a line a crash cut short is cut off, so the next line is whole)."""
    if not append or not path.exists():
        return open(path, "wb")
    f = open(path, "r+b")
    data_end = f.seek(0, os.SEEK_END)
    keep = 0
    step = 1 << 16
    position = data_end
    while position > 0:  # back from the end to the last newline
        position = max(0, position - step)
        f.seek(position)
        found = f.read(min(step, data_end - position)).rfind(b"\n")
        if found >= 0:
            keep = position + found + 1
            break
    f.truncate(keep)
    f.seek(keep)
    return f


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    with open_atomically(path) as f:
        f.write(data)


@contextlib.contextmanager
def open_atomically(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s content into, piece by piece: a temporary file beside
    ``path``, renamed over it when the block ends without an exception (removed otherwise).

    The file gets the usual permissions (0666 less the umask), not mkstemp's private 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's content, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
