"""The recording commands: ``run --record``, ``run --foxglove``, ``replay``, ``view``, ``info``, ``export``.

graphflow/cli.py hooks them in with :func:`add_run_options` (on ``run`` and ``replay``),
:func:`add_commands` and :func:`start_observers`/:func:`stop_observers` around ``app.run``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from ..arguments import offset_seconds, positive_rate, seconds, viewer_host, viewer_port
from ..viewer.cli import add_connect_arguments
from ..codelet import NodeError
from .errors import RecordingError, RecordingInvalid

# reader and writer (mcap, lz4, zstandard) are imported by the commands that use them


# -- run --record / --foxglove -------------------------------------------------------------------
def add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("recording")
    group.add_argument("--record", type=Path, metavar="FILE.mcap",
                       help="record the app's channels to this MCAP file (graphflow info/replay/view/export read it)")
    group.add_argument("--channels", action="append", default=[], metavar="PATTERN",
                       help="record only channels matching this glob, e.g. 'feeder/*' (repeatable; default all)")
    group.add_argument("--record-lossless", action="store_true",
                       help="make the graph wait for the recorder instead of the recorder dropping messages")
    group.add_argument("--record-split", metavar="SIZE",
                       help="start a new file (NAME_001.mcap, ...) once one passes SIZE, e.g. 500MB")
    group.add_argument("--record-foxglove", action="store_true",
                       help="also record images and skeletons in Foxglove's schemas (/foxglove/<channel>)")
    group.add_argument("--record-compression", choices=["none", "zstd", "lz4"], default=None,
                       help="chunk compression, where it pays: a chunk that shrinks by less than 20%% stores the next "
                            "ones as they are (default lz4: cheap; zstd also finds arrays that several channels carry, "
                            "half the OpenPose app's size for 2x the recorder's CPU; none: the least CPU)")
    group.add_argument("--foxglove", action="store_true",
                       help="serve images and skeletons live to Foxglove (WebSocket; needs graphflow[foxglove])")
    group.add_argument("--foxglove-port", type=int, default=8765, metavar="PORT",
                       help="port of the Foxglove WebSocket server (default 8765)")


def run_options_given(args) -> list[str]:
    """The options of :func:`add_run_options` that ``args`` sets, as arguments again (for the child
    process that runs a part of a split app). Kept in step with add_run_options by a test."""
    given = []
    if getattr(args, "record", None) is not None:
        given += ["--record", str(Path(args.record).resolve())]
    for pattern in getattr(args, "channels", None) or []:
        given += ["--channels", pattern]
    given += [flag for flag, name in (("--record-lossless", "record_lossless"), ("--record-foxglove", "record_foxglove"),
                                      ("--foxglove", "foxglove")) if getattr(args, name, False)]
    for flag, name in (("--record-split", "record_split"), ("--record-compression", "record_compression")):
        if getattr(args, name, None):
            given += [flag, str(getattr(args, name))]
    if getattr(args, "foxglove", False):
        given += ["--foxglove-port", str(args.foxglove_port)]
    return given


def start_observers(args, app) -> list:
    """Start what ``--record`` and ``--foxglove`` ask for; raises RecordingError (one line)."""
    from .writer import DEFAULT_COMPRESSION, ChannelFilter, Recorder, composed_app, parse_size

    observers = []
    if getattr(args, "channels", None) and not getattr(args, "record", None):
        raise RecordingError("--channels chooses what --record records: give --record FILE.mcap too")
    if getattr(args, "record", None):
        split = parse_size(args.record_split) if args.record_split else None
        recorder = Recorder(args.record, channels=ChannelFilter(args.channels, app.spec.channel_aliases),
                            lossless=args.record_lossless, split_bytes=split, app=composed_app(app.spec),
                            compression=args.record_compression or DEFAULT_COMPRESSION,
                            foxglove_channels=args.record_foxglove)
        observers.append(recorder.start(app))
    if getattr(args, "foxglove", False):
        from .live import FoxgloveLive

        try:
            observers.append(FoxgloveLive(port=args.foxglove_port).start(app))
        except RecordingError:
            stop_observers(observers)
            raise
    return observers


def stop_observers(observers, out=None) -> None:
    out = out or sys.stderr
    for observer in observers:
        observer.stop()
        if hasattr(observer, "summary"):  # the recorder: what it wrote
            print(observer.summary(), file=out)


# -- the commands --------------------------------------------------------------------------------
def add_commands(sub, add_app_args, add_run_args, run_app) -> None:
    """``replay``, ``view``, ``info``, ``export``. ``add_app_args``/``add_run_args`` add graphflow
    run's options to ``replay``; ``run_app(args, app)`` runs an app as ``graphflow run`` does."""
    replay = sub.add_parser("replay", help="feed a recording into an app in place of its sources")
    replay.add_argument("recording", type=Path, help="the MCAP file")
    add_app_args(replay)
    add_run_args(replay)
    replay.add_argument("--rate", default="1", metavar="R|max",
                        help="replay speed: 1 = as recorded (default), 2 = twice as fast, max = as fast as the app takes it")
    replay.add_argument("--loop", action="store_true", help="start over at the end (acqtimes keep increasing)")
    replay.add_argument("--start", type=offset_seconds, metavar="S", help="start S seconds into the recording")
    replay.add_argument("--end", type=offset_seconds, metavar="S", help="end S seconds into the recording")
    replay.add_argument("--map", action="append", default=[], metavar="RECORDED=node/component/port",
                        help="feed recorded channel RECORDED into this output (replacing it) or input "
                             "(repeatable; default: the app's source channels of the same name)")
    replay.set_defaults(func=lambda args: cmd_replay(args, run_app))

    view = sub.add_parser("view", help="open the web viewer on a recording (with a timeline), or --connect to a running app")
    view.add_argument("recording", type=Path, nargs="?", help="the MCAP file (or --connect)")
    add_connect_arguments(view)  # --connect HOST:PORT (graphflow.viewer.remote)
    view.add_argument("--viewer-port", type=viewer_port, default=3000, metavar="PORT", help="default 3000")
    view.add_argument("--viewer-host", type=viewer_host, default="127.0.0.1", metavar="HOST", help="default 127.0.0.1 (this machine only)")
    view.add_argument("--duration", type=seconds, help="serve for this many seconds (default: until Ctrl-C)")
    view.set_defaults(func=cmd_view)

    info = sub.add_parser("info", help="what a recording holds: channels, types, counts, rates, duration, the app")
    info.add_argument("recording", type=Path, help="the MCAP file")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)

    export = sub.add_parser("export", help="write a recording's images, video or COCO predictions")
    export.add_argument("recording", type=Path, help="the MCAP file")
    what = export.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", type=Path, metavar="DIR", help="every image of a channel as a PNG file")
    what.add_argument("--video", type=Path, metavar="FILE.mp4", help="the images of a channel as a video")
    what.add_argument("--coco", type=Path, metavar="FILE.json",
                      help="the skeletons as COCO keypoint results, written by the recorded app's prediction writer")
    export.add_argument("--channel", help="the image channel (default: the only one, or the app's first window's)")
    export.add_argument("--coco-writer", metavar="NODE/COMPONENT",
                        help="the component of the recorded app that writes COCO results (default: its PredictionWriter)")
    export.add_argument("--fps", type=positive_rate, help="video frame rate (default: the channel's recorded rate)")
    export.set_defaults(func=cmd_export)


def _open(path: Path):
    from .reader import Recording

    return Recording(path)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def cmd_replay(args, run_app) -> int:
    from ..loader import load_app
    from .replay import ReplayError, ReplayOptions, build_replay_app, parse_map, parse_rate

    try:
        options = ReplayOptions(rate=parse_rate(args.rate), loop=args.loop, start=args.start, end=args.end,
                                maps=[parse_map(m) for m in args.map])
        if options.start is not None and options.end is not None and options.end <= options.start:
            raise ReplayError(f"--end {options.end} is not after --start {options.start}")
        recording = _open(args.recording)
    except (ReplayError, RecordingInvalid) as exc:
        return _fail(str(exc))
    if _same_file(getattr(args, "record", None), args.recording):
        recording.close()
        return _fail(f"--record {args.record} is the recording being replayed: record to another file")
    with recording:
        if recording.recovery is not None:
            print(f"warning: {args.recording} was not closed properly; {recording.recovery}", file=sys.stderr)
        io = {key: value for key, value in (("input", args.input), ("output", args.output)) if value is not None}
        spec = load_app(args.app, args.config, args.set, io=io)
        try:
            app, removed = build_replay_app(spec, recording, options, workers=args.workers, max_ticks=args.max_ticks)
        except ReplayError as exc:
            return _fail(str(exc))
        replaced = [target for target in spec.io.get("input", ()) if target.rsplit("/", 1)[0] in removed]
        if args.input is not None and replaced:
            return _fail(f"--input sets {', '.join(replaced)}, but the recording replaces "
                         f"{', '.join(sorted({t.rsplit('/', 1)[0] for t in replaced}))}: leave --input out")
        span = ((recording.end_time or 0) - (recording.start_time or 0)) / 1e9
        if options.start is not None and options.start > span:
            return _fail(f"--start {options.start:g} is after the recording's end ({span:.3f} s in)")
        print(f"replaying {args.recording} into {args.app} in place of {', '.join(removed) or 'nothing'}",
              file=sys.stderr)
        changed = _params_changed(spec, recording.app() or {}, removed)
        if changed:  # (the app's values apply; a different result may come from these)
            shown = "; ".join(f"{path} {now!r} (recorded {then!r})" for path, now, then in changed[:5])
            more = f"; and {len(changed) - 5} more" if len(changed) > 5 else ""
            print(f"params that differ from the recording's: {shown}{more}", file=sys.stderr)
        return run_app(args, app)


def _params_changed(spec, recorded_app: dict, removed) -> list[tuple[str, object, object]]:
    """(node/component/param, the app's value, the recording's) for each param the recorded app
    set otherwise, of the components that publish: what a sink writes where (a file name, the io
    output) is this run's own, not what changes the results."""
    io = {target for targets in spec.io.values() for target in targets}
    changed = []
    for node, components in (recorded_app.get("config") or {}).items():
        for name, values in (components or {}).items():
            full_name = f"{node}/{name}"
            cls = spec.types.get(full_name)
            if cls is None or full_name in removed or not any(p.direction == "tx" for p in cls.ports().values()):
                continue
            declared, now = cls.params(), spec.params_of(full_name)
            for param, value in (values or {}).items():
                if param not in declared or f"{full_name}/{param}" in io:
                    continue
                try:
                    then = declared[param].convert(value)
                except (TypeError, ValueError):
                    then = value
                if param in now and now[param] != then:
                    changed.append((f"{full_name}/{param}", now[param], then))
    return changed


def cmd_view(args) -> int:
    from .view import view_recording

    if args.connect is not None or args.recording is None:
        if args.recording is not None:
            return _fail("give a recording or --connect HOST:PORT, not both")
        if args.connect is None:
            return _fail("give a recording (FILE.mcap) or --connect HOST:PORT")
        from ..viewer.remote import cmd_view_connect

        return cmd_view_connect(args)
    return view_recording(args.recording, args.viewer_host, args.viewer_port, args.duration)


# -- info ------------------------------------------------------------------------------------------
def describe(recording) -> dict:
    """Everything ``graphflow info`` prints."""
    app = None
    try:
        app = recording.app()
    except RecordingInvalid:
        pass
    start = recording.start_time
    channels = []
    for channel in sorted(recording.channels.values(), key=lambda c: c.topic):
        times = recording.times(channel.topic)
        count = len(times)
        span = (times[-1] - times[0]) / 1e9 if count > 1 else 0.0
        channels.append({"channel": channel.topic, "type": channel.schema_name, "encoding": channel.message_encoding,
                         "messages": count, "rate": (count - 1) / span if span > 0 else 0.0,
                         "first_s": (times[0] - start) / 1e9 if count else None,
                         "last_s": (times[-1] - start) / 1e9 if count else None})
    meta = recording.metadata.get("graphflow", {})
    return {
        "file": str(recording.path), "bytes": recording.size, "messages": sum(c["messages"] for c in channels),
        "channels": channels, "duration_s": recording.duration, "graphflow": recording.is_graphflow,
        "app": app.get("name") if app else meta.get("app"), "app_file": (app or {}).get("description", ""),
        "recorded_at": meta.get("recorded_at"), "command": meta.get("command"),
        "attachments": sorted(recording.attachments),
        "recovered": None if recording.recovery is None else {
            "messages": recording.recovery.messages, "chunks": recording.recovery.chunks,
            "kept_bytes": recording.recovery.kept_bytes, "file_bytes": recording.recovery.file_bytes,
            "text": str(recording.recovery)},
    }


def cmd_info(args) -> int:
    try:
        recording = _open(args.recording)
    except RecordingInvalid as exc:
        return _fail(str(exc))
    try:
        with recording:
            info = describe(recording)
    except RecordingInvalid as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['file']}: {info['bytes'] / 1e6:.2f} MB, {info['messages']} messages on {len(info['channels'])} "
          f"channels over {info['duration_s']:.2f} s")
    if info["app"]:
        print(f"app: {info['app']} ({info['app_file']})" if info["app_file"] else f"app: {info['app']}")
    if info["recorded_at"]:
        print(f"recorded: {info['recorded_at']}  command: {info['command']}")
    if info["recovered"]:
        print(f"not closed properly (killed, or the disk filled): {info['recovered']['text']}")
    print(f"{'channel':52} {'type':28} {'messages':>9} {'rate/s':>8} {'first s':>8} {'last s':>8}")
    for c in info["channels"]:
        first = "-" if c["first_s"] is None else f"{c['first_s']:.2f}"
        last = "-" if c["last_s"] is None else f"{c['last_s']:.2f}"
        print(f"{c['channel']:52} {c['type']:28} {c['messages']:>9} {c['rate']:>8.2f} {first:>8} {last:>8}")
    return 0


# -- export ----------------------------------------------------------------------------------------
def _image_channels(recording) -> list[str]:
    return [c.topic for c in recording.channels.values() if c.metadata.get("render") == "image"]


def _image_channel(recording, chosen: str | None) -> str:
    images = _image_channels(recording)
    if chosen:
        if chosen not in images:
            what = "not an image channel" if chosen in recording.by_topic else "no such channel"
            raise RecordingError(f"--channel {chosen!r}: {what} (image channels: {', '.join(images) or 'none'})")
        return chosen
    if len(images) == 1:
        return images[0]
    if not images:
        raise RecordingError(f"{recording.path} holds no image channel")
    app = recording.app() or {}
    for window in app.get("ui_config", {}).get("windows", {}).values():
        for channel in window.get("channels", []):
            if channel.get("name") in images:
                return channel["name"]
    raise RecordingError(f"{recording.path} holds several image channels ({', '.join(images)}): choose one with --channel")


def _images(recording, topic: str):
    for item in recording.messages([topic]):
        _, _, fields = item.fields()
        pixels = fields.get("pixels")
        if pixels is None:
            raise RecordingError(f"{topic}: messages have no 'pixels' field")
        if fields.get("color_order") == "rgb" and pixels.ndim == 3:
            pixels = pixels[..., ::-1]
        yield item, pixels


def cmd_export(args) -> int:
    target = args.coco or args.video or args.images
    if _same_file(target, args.recording):
        return _fail(f"{target} is the recording being read: write the export to another file")
    if target is not None and (args.coco or args.video) and Path(target).is_dir():
        return _fail(f"{target} is a folder: give the {'COCO results' if args.coco else 'video'} file's name")
    if args.images and Path(args.images).exists() and not Path(args.images).is_dir():
        return _fail(f"{args.images} is a file: --images takes a folder")
    try:
        recording = _open(args.recording)
    except RecordingInvalid as exc:
        return _fail(str(exc))
    try:
        with recording:
            if recording.recovery is not None:
                print(f"warning: {args.recording} was not closed properly; {recording.recovery}", file=sys.stderr)
            if args.coco:
                count = export_coco(recording, args.coco, args.coco_writer)
                print(f"wrote {count} COCO results to {args.coco}")
            else:
                topic = _image_channel(recording, args.channel)
                if args.images:
                    count = export_images(recording, args.images, topic)
                    done = f"wrote {count} images of {topic} to {args.images}"
                else:
                    count = export_video(recording, args.video, topic, args.fps)
                    done = f"wrote {count} frames of {topic} to {args.video}"
                others = [name for name in _image_channels(recording) if name != topic]
                print(done + (f" (other image channels: {', '.join(others)}; choose with --channel)"
                              if others and not args.channel else ""))
    except (RecordingError, RecordingInvalid, ValueError) as exc:  # ValueError: wire.WireError, a damaged message
        return _fail(str(exc))
    except OSError as exc:  # the output: a file where a folder must be, a full disk, no permission
        return _fail(f"cannot write {exc.filename or target}: {exc.strerror or exc}")
    return 0


def _same_file(one, other) -> bool:
    try:
        return one is not None and os.path.samefile(one, other)
    except OSError:  # one of them does not exist
        return False


def export_images(recording, folder: Path, topic: str) -> int:
    """Every image of the image channel ``topic`` as a PNG file."""
    from ..media import write_image

    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, (item, pixels) in enumerate(_images(recording, topic), start=1):
        write_image(folder / f"{count - 1:06d}.png", pixels)
    return count


def export_video(recording, path: Path, topic: str, fps: float | None = None) -> int:
    """The images of the image channel ``topic`` as an mp4 video."""
    import cv2

    from ..media import open_video

    if fps is None:
        times = recording.times(topic)
        span = (times[-1] - times[0]) / 1e9 if len(times) > 1 else 0.0
        fps = (len(times) - 1) / span if span > 0 else 10.0
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    count = 0
    warned = False
    try:
        for item, pixels in _images(recording, topic):
            if pixels.ndim == 2:
                pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
            if writer is None:  # the first frame's size, made even (the encoder's 4:2:0 colour needs it)
                first_shape = pixels.shape[:2]
                size = (max(2, pixels.shape[1] // 2 * 2), max(2, pixels.shape[0] // 2 * 2))
                writer = open_video(path, "mp4v", max(fps, 0.1), size)
            if (pixels.shape[1], pixels.shape[0]) != size:
                if count and not warned and pixels.shape[:2] != first_shape:
                    warned = True
                    print(f"warning: {topic}: frames of another size than the first ({size[0]}×{size[1]}) are "
                          f"scaled to fit it, with black borders (a video has one frame size)", file=sys.stderr)
                pixels = _fit(pixels, size)
            writer.write(pixels)
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if count == 0:
        raise RecordingError(f"{topic}: no images recorded")
    return count


def _fit(pixels, size: tuple[int, int]):
    """``pixels`` scaled to fit a ``size`` (width, height) frame, centred, with black borders:
    the aspect ratio kept."""
    import cv2
    import numpy as np

    width, height = size
    scale = min(width / pixels.shape[1], height / pixels.shape[0])
    w, h = max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale))
    frame = np.zeros((height, width, 3), np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    frame[top:top + h, left:left + w] = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA)
    return frame


def export_coco(recording, path: Path, writer_name: str | None = None) -> int:
    """Run the recorded app's own COCO writer (its class and config, from the attached app) over the
    recorded skeletons: the file is what the live run's writer wrote."""
    from ..registry import Registry
    from ..testing import Harness

    app = recording.app()
    if app is None:
        raise RecordingError(f"{recording.path} has no attached app, so it does not say how to write COCO results")
    registry = Registry()
    for module in app.get("modules", []):
        base = app.get("module_dirs", {}).get(module)
        try:
            registry.load_pack(module, Path(base) if base else None)
        except Exception as exc:
            raise RecordingError(f"node pack {module!r} of the recorded app cannot be loaded: {exc}") from None
    components = {f"{node['name']}/{c['name']}": c["type"] for node in app["graph"]["nodes"]
                  for c in node.get("components", [])}
    if writer_name is None:
        writers = [name for name, type_name in components.items() if type_name.endswith("PredictionWriter")]
        if len(writers) != 1:
            raise RecordingError(f"the recorded app has {len(writers) or 'no'} PredictionWriter components"
                                 f"{' (' + ', '.join(writers) + ')' if writers else ''}: choose with --coco-writer NODE/COMPONENT")
        writer_name = writers[0]
    if writer_name not in components:
        raise RecordingError(f"--coco-writer {writer_name!r}: the recorded app has no such component")
    cls = registry.get(components[writer_name])
    if cls is None:
        raise RecordingError(f"{writer_name}: node type {components[writer_name]!r} is not known here")
    if not {"folder", "filename"} <= set(cls.params()):
        raise RecordingError(f"--coco-writer {writer_name!r}: a {components[writer_name]} writes no results file "
                             f"(a writer has the params folder and filename)")
    inputs = {e["target"].rsplit("/", 1)[1]: e["source"] for e in app["graph"]["edges"]
              if e["target"].rsplit("/", 1)[0] == writer_name}
    missing = [source for source in inputs.values() if source not in recording.by_topic]
    if missing:
        raise RecordingError(f"{writer_name} was fed by {', '.join(missing)}, which the recording does not hold "
                             f"(record it: --channels '{missing[0]}')")
    node, name = writer_name.split("/", 1)
    config = dict(app.get("config", {}).get(node, {}).get(name, {}))
    config = {key: value for key, value in config.items() if key in cls.params()}
    path = Path(path)
    if "folder" in cls.params():
        config["folder"] = str(path.parent)
    if "filename" in cls.params():
        config["filename"] = path.name
    harness = Harness(cls, config, node=node, name=name)
    harness.component.log.setLevel(logging.WARNING)  # the export says what it wrote, once
    by_topic = {source: port for port, source in inputs.items()}
    try:
        harness.start()
        for item in recording.messages(list(by_topic)):
            message = item.decode()
            harness.feed(by_topic[item.topic], message.payload, acqtime=message.acqtime)
            harness.run_pending()
        harness.stop()
    except NodeError as exc:
        raise RecordingError(f"{writer_name}: {exc}") from None
    stream = getattr(harness.component, "stream_path", None)  # the live writer's crash-safe stream:
    if stream is not None and path.exists() and Path(stream).exists():  # a by-product here
        Path(stream).unlink()
    results = json.loads(path.read_text()) if path.exists() else []
    return len(results)
