"""Argument types the command lines share: argparse calls them while parsing, so a value that
cannot work is refused at once (``graphflow CMD: error: argument --OPTION: ...``, exit 2),
before any work that it would throw away."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Callable


def checked(convert: Callable, accepts: Callable, expected: str) -> Callable:
    """An argument type: ``convert`` the text, refuse it unless ``accepts`` the value."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


def _finite(low: float, inclusive: bool) -> Callable:
    return lambda value: math.isfinite(value) and (value >= low if inclusive else value > low)


positive_int = checked(int, lambda value: value >= 1, "a whole number, 1 or more")  # --workers, --frames, ...
seconds = checked(float, _finite(0, inclusive=False), "a positive number of seconds")  # --duration, --timeout
MAX_OFFSET_S = 1e9  # about 32 years: beyond any recording, and its nanoseconds still fit an int64
offset_seconds = checked(float, lambda value: _finite(0, inclusive=True)(value) and value <= MAX_OFFSET_S,
                         f"a number of seconds from 0 to {MAX_OFFSET_S:g}")  # replay --start, --end
MAX_WORKERS = 1024  # threads; each costs memory, and more than cores bring nothing
worker_count = checked(int, lambda value: 1 <= value <= MAX_WORKERS, f"a whole number from 1 to {MAX_WORKERS}")
positive_rate = checked(float, _finite(0, inclusive=False), "a positive number")  # export --fps
tcp_port = checked(int, lambda value: 1 <= value <= 65535, "a port number 1-65535")  # remote view --port
# --viewer-port: a bad one is a usage error, not a viewer failure
viewer_port = checked(int, lambda value: 0 <= value <= 65535, "a port number 0-65535 (0: a free one)")


def output_file(text: str) -> Path:
    """A file written when the command ends (a report, scores). The folders on its way that do not
    exist yet are made then, as ``--output`` makes its folder; what stops the write is refused now:
    a folder of that name, a file where a folder must be, a folder this user cannot write in."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    existing = path.parent
    while not existing.exists():  # (stops at '.' or '/', which exist)
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {existing} is not writable")
    return path


def viewer_host(text: str) -> str:
    """--viewer-host: an address this machine can listen on; a name that does not resolve is a
    usage error (the same for ``run`` and ``view``), not a warning."""
    import socket

    try:
        socket.getaddrinfo(text or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot listen on {text!r}: {getattr(exc, 'strerror', None) or exc}")
    return text
