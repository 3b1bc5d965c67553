"""The progress line of a long run on a terminal: ``feeder/image_loader: bus.jpg 12/40 (30%) 3.1/s``.

A component that knows how far it is (a loader going through a folder or a video) says so with
:meth:`graphflow.codelet.Codelet.report_progress`; :class:`ProgressLine` shows the latest report
of each such component on one line of stderr, redrawn twice a second, and clears it when the run
ends, before the summary, and before each log line (a warning never lands in the middle of it). It
draws only on a terminal: piped or logged output stays clean.
"""
from __future__ import annotations

import logging
import shutil
import sys
import threading
import time


class ProgressLine:
    """``with ProgressLine(components):`` around a run. Draws nothing when ``stream`` is no terminal."""

    def __init__(self, components, stream=None, interval: float = 0.5):
        self.components = list(components)
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.enabled = _is_terminal(self.stream)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._began = time.monotonic()
        self._shown = False
        self._lock = threading.Lock()  # the drawing thread and log lines from any thread

    def __enter__(self) -> "ProgressLine":
        if self.enabled:
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._clear_before_log)
            self._thread = threading.Thread(target=self._run, name="graphflow-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self._clear_before_log)
        self._clear()  # the summary starts on a clean line

    def _clear(self) -> None:
        with self._lock:
            if self._shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self._shown = False

    def _clear_before_log(self, record: logging.LogRecord) -> bool:
        self._clear()  # the next round draws the line again, under the log line
        return True

    def text(self) -> str:
        """The line as it would be drawn now ('' while no component reported progress)."""
        elapsed = max(time.monotonic() - self._began, 1e-9)
        parts = []
        for component in self.components:
            report = component.progress
            if report is None:
                continue
            done, total, item = report
            counted = f"{done}/{total} ({100 * done // total}%)" if total else f"{done}"
            parts.append(f"{component.full_name}: {item + ' ' if item else ''}{counted} {done / elapsed:.1f}/s")
        return " | ".join(parts)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            line = self.text()
            if not line:
                continue
            width = shutil.get_terminal_size((100, 20)).columns - 1
            with self._lock:
                self.stream.write("\r\033[K" + line[:width])
                self.stream.flush()
                self._shown = True


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False
