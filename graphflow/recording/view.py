"""``graphflow view FILE.mcap``: the web viewer on a recording, with a timeline.

The recorded app (the ``app.json`` attachment) is built, not run: its components and channels
give the viewer its graph, channel tree, windows and params. A :class:`Player` then plays the
recorded messages into the app's tap as the running app published them: each becomes its
channel's latest message and goes to the tap's observers (the viewer's among them), so every
window, plot and the inspector work as they do live. The player's clock is the recording's time.

The timeline (``/api/recording``; the page's ``static/timeline.js``): play at a rate, pause, step
one message, seek to a time (every channel then shows its last message at or before that time).
A chunk found damaged when it is read is skipped; the state lists it (byte offset and why) and the
page says how many were skipped.
Only the MCAP index is read up front (message times per channel); a message is read from its chunk
when it is played.
"""
from __future__ import annotations

import bisect
import heapq
import sys
import threading
import time
from pathlib import Path

from .errors import RecordingInvalid
from .reader import Recording

RATES = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0)


class PlayerError(ValueError):
    """A timeline request that does not fit (answered as a 400)."""


class Player:
    """Plays ``recording`` into ``app`` (an App built from the recorded app, never run)."""

    def __init__(self, recording: Recording, app):
        self.recording = recording
        self.app = app
        self.channels = app.channels()
        topics = [t for t in recording.by_topic if t in self.channels and recording.by_topic[t].message_encoding == "msgpack"]
        self.skipped = sorted(t for t in recording.by_topic if t not in self.channels)
        # the timeline: every message of the app's channels, (log time, topic), in time order
        # (in the order they were written: equal acqtimes in publish order, image before skeleton)
        ordered = heapq.merge(*([(entry, topic) for entry in recording.index(topic)] for topic in topics))
        self.times = [(entry[0], topic) for entry, topic in ordered]
        self._log_times = [t for t, _ in self.times]
        self.first = self._log_times[0] if self._log_times else 0
        self.last = self._log_times[-1] if self._log_times else 0
        self.index = -1          # the last message played
        self.rate = 1.0
        self.playing = False
        self.played = 0
        self._moves = 0          # seeks and steps: playing resets its pace after one
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="graphflow-player", daemon=True)

    # -- the clock the app reads -------------------------------------------------------------------
    def clock(self) -> float:
        """Recording time (seconds on the recorded app's clock) at the cursor."""
        index = self.index
        return (self._log_times[index] if index >= 0 else self.first) / 1e9

    # -- controls (from the viewer's thread) -------------------------------------------------------
    def state(self) -> dict:
        with self._lock:
            position = self._log_times[self.index] if self.index >= 0 else self.first
            return {"file": str(self.recording.path), "start": 0.0, "end": (self.last - self.first) / 1e9,
                    "position": (position - self.first) / 1e9, "index": self.index, "messages": len(self.times),
                    "playing": self.playing, "rate": self.rate, "rates": list(RATES),
                    "topic": self.times[self.index][1] if self.index >= 0 else None,
                    "acqtime": position / 1e9, "skipped": self.skipped,
                    "damaged": [{"offset": offset, "why": why} for offset, why in sorted(self.recording.damaged.items())],
                    "recovered": None if self.recording.recovery is None else str(self.recording.recovery)}

    def control(self, body) -> dict:
        """POST /api/recording: {"action": "play"|"pause"|"step"|"seek", "rate"?, "time"?, "count"?}."""
        if not isinstance(body, dict) or body.get("action") not in ("play", "pause", "step", "seek"):
            raise PlayerError('expected {"action": "play" | "pause" | "step" | "seek", ...}')
        action = body["action"]
        if "rate" in body:
            self.set_rate(body["rate"])
        if action == "play":
            self.play()
        elif action == "pause":
            self.pause()
        elif action == "step":
            count = body.get("count", 1)
            if not isinstance(count, int) or isinstance(count, bool) or not -1000 <= count <= 1000 or count == 0:
                raise PlayerError(f"count: expected a whole number of messages from -1000 to 1000, not 0; got {count!r}")
            self.step(count)
        else:
            seconds = body.get("time")
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
                raise PlayerError(f"time: expected seconds from the start of the recording, got {seconds!r}")
            self.seek(float(seconds))
        return self.state()

    def set_rate(self, rate) -> None:
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.01 <= rate <= 100:
            raise PlayerError(f"rate: expected a number from 0.01 to 100, got {rate!r}")
        with self._lock:
            self.rate = float(rate)
            self._wake.notify_all()

    def play(self) -> None:
        with self._lock:
            if self.index >= len(self.times) - 1:
                self.index = -1  # at the end: play from the start
            self.playing = True
            self._wake.notify_all()

    def pause(self) -> None:
        with self._lock:
            self.playing = False
            self._wake.notify_all()

    def step(self, count: int = 1) -> None:
        """Pause and play the next ``count`` messages (a negative count seeks back that many)."""
        with self._lock:
            self.playing = False
            if count < 0:
                target = max(0, self.index + count)
                self._show_at(self._log_times[target], target)
                return
            for _ in range(count):
                if self.index >= len(self.times) - 1:
                    break
                self.index += 1
                self._play(self.index)
            self._moves += 1

    def seek(self, seconds: float) -> None:
        """Every channel shows its last message at or before ``seconds`` into the recording."""
        with self._lock:
            target_time = self.first + round(max(0.0, seconds) * 1e9)
            index = bisect.bisect_right(self._log_times, target_time) - 1
            self._show_at(target_time, index)

    def _show_at(self, log_time: int, index: int) -> None:
        found = []
        for topic in {topic for _, topic in self.times}:
            message = self.recording.message_at(topic, log_time)
            if message is not None:
                found.append(message)
        for message in sorted(found, key=lambda m: (m.log_time, m.publish_time)):
            self._publish(message)
        self.index = index
        self._moves += 1
        self._wake.notify_all()

    # -- playing ---------------------------------------------------------------------------------------
    def _play(self, index: int) -> None:
        log_time, topic = self.times[index]
        message = self.recording.message_at(topic, log_time)
        if message is not None:
            self._publish(message)

    def _publish(self, recorded) -> None:
        """As the app's channel published it: its latest message, and the tap's observers."""
        message = recorded.decode()
        tx = self.channels[recorded.topic]
        now = message.pubtime
        if not tx.published:
            tx.first_time = now
        tx.published += 1
        tx.last_time = now
        tx.last = message
        for observe in self.app.tap.on_published:
            observe(tx, message)
        self.played += 1

    def _run(self) -> None:
        wall = None  # (wall clock, log time) when playing (re)started at the current pace
        with self._lock:
            while not self._closed:
                if not self.playing or self.index >= len(self.times) - 1:
                    if self.playing:
                        self.playing = False  # played to the end
                    wall = None
                    self._wake.wait()
                    continue
                following = self._log_times[self.index + 1]
                now = time.monotonic()
                if wall is None or wall[2] != self.rate or wall[3] != self._moves:
                    current = self._log_times[self.index] if self.index >= 0 else following
                    wall = (now, current, self.rate, self._moves)
                due = wall[0] + (following - wall[1]) / 1e9 / self.rate
                if due > now:
                    self._wake.wait(min(due - now, 0.5))
                    continue
                self.index += 1
                try:
                    self._play(self.index)
                except Exception as exc:  # a message that does not decode: say so, keep playing
                    print(f"view: message {self.index} on {self.times[self.index][1]}: {exc}", file=sys.stderr)

    def start(self) -> "Player":
        self._thread.start()
        return self

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)


def recorded_app(recording: Recording, clock):
    """The App of the recording's attached app (built, not run), with ``clock`` as its clock."""
    from ..app import App
    from ..loader import load_app_data

    data = recording.app()
    if data is None:
        raise RecordingInvalid(f"{recording.path} has no attached app (app.json), so there is no graph to show; "
                               f"graphflow info and export still read it")
    return App(load_app_data(data, "recorded.app.json"), clock=clock)


def serve(path: Path, host: str = "127.0.0.1", port: int = 3000, out=None):
    """Open the recording and serve the viewer on it; returns (session, player). Raises
    RecordingInvalid, the loader's AppInvalid or ViewerError (one line each)."""
    from ..viewer.api import ApiError
    from ..viewer.session import ViewerSession

    recording = Recording(path)
    holder: dict = {}
    try:
        app = recorded_app(recording, clock=lambda: holder["player"].clock() if "player" in holder else 0.0)
        player = holder["player"] = Player(recording, app)
        session = ViewerSession(host, port, out=out)
    except BaseException:
        recording.close()
        raise

    def control(body):
        try:
            return player.control(body)
        except PlayerError as exc:
            raise ApiError(400, str(exc)) from None

    session.server.extra_routes += [("GET", "/api/recording", player.state), ("POST", "/api/recording", control)]
    session.server.attach(app)
    session.server.api.params_editable = False  # the recorded app is built, never run
    session.server.start()
    player.start()
    player.seek(0.0)  # the first messages, so that the windows open on something
    return session, player


def view_recording(path: Path, host: str = "127.0.0.1", port: int = 3000, duration: float | None = None,
                   out=None) -> int:
    from ..loader import AppInvalid
    from ..viewer.http import ViewerError

    out = out or sys.stdout
    try:
        session, player = serve(Path(path), host, port, out)
    except (RecordingInvalid, ViewerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AppInvalid as exc:
        print(f"error: the recording's app cannot be built here: {exc.errors[0]}"
              + (f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""), file=sys.stderr)
        return 2
    state = player.state()
    print(f"viewer: {session.url} — {path}: {state['messages']} messages over {state['end']:.2f} s "
          f"(timeline at the bottom: play, pause, step, seek, rate); Ctrl-C to quit", file=out, flush=True)
    if player.recording.recovery is not None:
        print(f"warning: {path} was not closed properly; {player.recording.recovery}", file=sys.stderr)
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        player.close()
        session.close()
        player.recording.close()
    return 0
