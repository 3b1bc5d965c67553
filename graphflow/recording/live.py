"""``graphflow run APP --foxglove``: the app's images and skeletons served live to Foxglove.

An observer of the tap like the recorder: on the graph's threads it puts a reference to each
image or skeleton message on a small queue (dropping when it is full: a live view wants the
latest), and its own thread converts them (:mod:`graphflow.recording.foxglove`: JPEG images,
skeleton annotations, JSON) and logs them to a Foxglove WebSocket server from the optional
``foxglove-sdk`` package (``pip install graphflow[foxglove]``). Topics are ``/foxglove/<channel>``,
as in a recording made with ``--record-foxglove``.
"""
from __future__ import annotations

import queue
import sys
import threading

from . import foxglove
from .errors import RecordingError

QUEUE_MESSAGES = 8
_STOP = object()


class FoxgloveLive:
    def __init__(self, host: str = "127.0.0.1", port: int = 8765, out=None):
        try:
            import foxglove as sdk
        except ImportError:
            raise RecordingError("--foxglove needs the foxglove-sdk package: pip install 'graphflow[foxglove]'") from None
        self._sdk = sdk
        self.host, self.port = host, port
        self.out = out or sys.stderr
        self.server = None
        self.sent = 0
        self.dropped = 0
        self._kinds: dict[str, str | None] = {}
        self._channels: dict[str, object] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_MESSAGES)
        self._thread: threading.Thread | None = None
        self._tap = None
        self._context = sdk.Context()

    # -- observer: graph threads ----------------------------------------------------------------
    def published(self, channel, message) -> None:
        kind = self._kinds.get(channel.name, "?")
        if kind == "?":
            kind = self._kinds[channel.name] = foxglove.visual_kind(channel.message_type)
        if kind is None:
            return
        try:
            self._queue.put_nowait((channel.name, kind, message))
        except queue.Full:
            self.dropped += 1

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, app) -> "FoxgloveLive":
        try:
            self.server = self._sdk.start_server(name=f"graphflow {app.spec.name}", host=self.host, port=self.port,
                                                 context=self._context)
        except Exception as exc:  # the SDK reports a taken port as a RuntimeError of its own
            raise RecordingError(f"--foxglove: cannot serve on {self.host}:{self.port}: {exc}") from None
        port = self.server.port
        self.port = port() if callable(port) else port
        print(f"foxglove: ws://{self.host}:{self.port} (open it in Foxglove: Open connection → Foxglove WebSocket)",
              file=self.out, flush=True)
        self._thread = threading.Thread(target=self._run, name="graphflow-foxglove", daemon=True)
        self._thread.start()
        self._tap = app.tap
        app.tap.subscribe(self)
        return self

    def stop(self) -> None:
        if self._tap is not None:
            self._tap.unsubscribe(self)
            self._tap = None
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _channel(self, name: str, kind: str):
        found = self._channels.get(name)
        if found is None:
            schema = self._sdk.Schema(name=foxglove.SCHEMAS[kind]["title"], encoding="jsonschema",
                                      data=foxglove.schema_bytes(kind))
            found = self._channels[name] = self._sdk.Channel(foxglove.topic(name), schema=schema,
                                                             message_encoding="json", context=self._context)
        return found

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            name, kind, message = item
            try:
                data = foxglove.convert(kind, message.payload, message.acqtime, name)
                self._channel(name, kind).log(data, log_time=max(0, round(message.acqtime * 1e9)))
                self.sent += 1
            except Exception as exc:  # a bad frame must not end the live view
                print(f"foxglove: {name}: {exc}", file=self.out, flush=True)
