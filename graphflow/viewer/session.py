"""What ``graphflow run`` and ``graphflow view`` do with the viewer."""
from __future__ import annotations

import signal
import sys
import threading
import time

from .http import ViewerServer

FINISHED = "graph finished; viewer still serving, Ctrl-C to quit"


class ViewerSession:
    """The viewer around one ``app.run``: binds at construction (a taken port is an error before
    anything runs), serves while the graph runs, and when the graph ends by itself (sources
    exhausted, or a failure) keeps serving the last messages until Ctrl-C, SIGTERM or the end of
    ``--duration``. Without ``--duration`` and without a terminal on stdin (scripts, CI, tests)
    nobody could press Ctrl-C, so it closes at once instead."""

    def __init__(self, host: str = "127.0.0.1", port: int = 3000, out=None, *, insecure: bool = False):
        self.server = ViewerServer(host, port, insecure=insecure)
        self.out = out or sys.stdout
        self._user_stop = False
        self._deadline = None

    @property
    def url(self) -> str:
        return self.server.url

    def run(self, app, duration: float | None = None) -> None:
        """``app.run(duration)`` with the viewer up. Ctrl-C stops the graph *and* the viewer."""
        self.server.attach(app).start()
        server = self.server
        if server.loopback:
            print(f"viewer: {self.url}", file=self.out, flush=True)
        elif server.token is not None:  # shown once, like Jupyter's; the browser then keeps it in a cookie
            print(f"viewer: {server.login_url} (listening on {server.host}; open this address once, "
                  f"the token is then kept in a cookie)", file=self.out, flush=True)
        else:
            print(f"viewer: {self.url} (listening on {server.host} WITHOUT a token: --viewer-insecure)",
                  file=self.out, flush=True)
        self._deadline = None if duration is None else time.monotonic() + duration

        def interrupted(*_):
            self._user_stop = True
            app.request_stop("Ctrl-C")

        previous = _install(signal.SIGINT, interrupted)
        try:
            app.run(duration=duration)
        finally:
            _restore(signal.SIGINT, previous)
        if self._deadline is not None and time.monotonic() >= self._deadline - 0.05:
            self._user_stop = True

    def linger(self) -> None:
        """After the graph ended on its own: keep serving until Ctrl-C / SIGTERM / duration."""
        try:
            if self._user_stop:
                return
            if self._deadline is None and not _interactive():
                print("graph finished; viewer closed (stdin is not a terminal, so nobody can Ctrl-C it: "
                      "pass --duration to keep it serving)", file=self.out, flush=True)
                return
            print(f"{FINISHED} ({self.url})", file=self.out, flush=True)
            done = threading.Event()
            previous = _install(signal.SIGTERM, lambda *_: done.set())
            try:
                while not done.is_set():
                    timeout = 0.2 if self._deadline is None else min(0.2, self._deadline - time.monotonic())
                    if timeout <= 0:
                        break
                    done.wait(timeout)
            except KeyboardInterrupt:
                pass
            finally:
                _restore(signal.SIGTERM, previous)
        finally:
            self.close()

    def close(self) -> None:
        self.server.close()


def _interactive() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def _install(sig, handler):
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(sig, handler)


def _restore(sig, previous) -> None:
    if previous is not None:
        signal.signal(sig, previous)

