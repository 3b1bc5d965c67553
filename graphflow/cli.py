"""The ``graphflow`` command line: argument parsing and text output only; the work is done by
the modules below it (loader, app, evaluation, viewer). Heavy modules are imported by the
command that needs them, so ``graphflow nodes`` and ``graphflow validate`` start fast."""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import signal
import sys
from contextlib import nullcontext
from pathlib import Path

from .arguments import output_file, positive_int, seconds, worker_count
from .channels import cli as channels_cli
from .deploy import cli as deploy_cli
from .files import write_atomically
from .loader import COMMAND_LINE, AppError, AppInvalid, load_app
from .progress import ProgressLine
from .recording import cli as recording_cli
from .registry import Registry, load_error
from .viewer.cli import add_viewer_arguments, open_viewer, start_view_server


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_LogFormatter())
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return status
    except BrokenPipeError:  # `graphflow ... | head`: the reader has gone; stop quietly, like SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:  # Ctrl-C outside a running graph (loading, validating, exporting)
        print("interrupted", file=sys.stderr)
        return 130
    except AppInvalid as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        ran = "; nothing was run" if args.command in ("run", "replay", "bench", "eval") else ""
        print(f"{len(exc.errors)} problem{'s' if len(exc.errors) != 1 else ''} found{ran}.", file=sys.stderr)
        return 1


class _LogFormatter(logging.Formatter):
    """``LEVEL logger: message``; a node's line names its component once (nodes start their
    messages with it; their logger is ``graphflow.node.<component>``)."""
    NODE = "graphflow.node."

    def __init__(self):
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name.startswith(self.NODE):
            message = record.getMessage()
            component = record.name[len(self.NODE):]
            if not message.startswith(component + ":"):
                message = f"{component}: {message}"
            text = f"{record.levelname} {message}"
            if record.exc_info:
                text += "\n" + self.formatException(record.exc_info)
            return text
        return super().format(record)


CONFIG_HELP = "config overlay merged over the app's config (repeatable; later wins)"
SET_HELP = "set one param, typed by its declaration (repeatable; wins over --config)"
DESCRIPTION = "Run, inspect, record and deploy graphflow apps: JSON graphs of nodes wired by typed message channels."
EXAMPLES = """examples:
  graphflow run apps/openpose.app.json --input photo.jpg --output out/
  graphflow validate apps/*.app.json
  graphflow nodes openpose.              (node types: ports, params, docs)
  graphflow COMMAND --help"""


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="graphflow", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"graphflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="validate and run an app")
    _add_app_args(run)
    _add_run_args(run)
    channels_cli.add_run_arguments(run)  # --process, --single-process, --insecure: run only
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check app files; exit 0 when all are valid")
    validate.add_argument("apps", nargs="+", type=Path, metavar="APP", help="app files (*.app.json)")
    validate.add_argument("--config", action="append", default=[], type=Path, metavar="FILE", help=CONFIG_HELP)
    validate.add_argument("--set", action="append", default=[], metavar="NODE/COMPONENT/PARAM=VALUE", help=SET_HELP)
    validate.set_defaults(func=cmd_validate)

    nodes = sub.add_parser("nodes", help="list every node type: ports, params, docs")
    nodes.add_argument("--json", action="store_true", help="print JSON")
    nodes.add_argument("--module", action="append", default=[], metavar="PACK",
                       help="also load this node pack: a module name, or a path to a pack folder or .py file "
                            "(repeatable); the packs that ship with graphflow and entry points are always listed")
    nodes.add_argument("filter", nargs="?", help="only types whose name contains this")
    nodes.set_defaults(func=cmd_nodes)

    graph = sub.add_parser("graph", help="print an app's wiring as Graphviz dot or Mermaid")
    graph.add_argument("app", type=Path, help="the app file (*.app.json)")
    graph.add_argument("--format", choices=["dot", "mermaid"], default="dot", help="Graphviz dot (default) or Mermaid")
    graph.set_defaults(func=cmd_graph)

    bench = sub.add_parser("bench", help="measure an app's throughput (frames/s) and per-node latency")
    _add_app_args(bench)
    bench.add_argument("--frames", type=positive_int, default=50, help="ticks of every source (default 50)")
    bench.add_argument("--workers", type=worker_count, help="worker threads (default: the core count)")
    bench.add_argument("--json", type=output_file, help="also write the figures to this JSON file")
    bench.set_defaults(func=cmd_bench)

    evaluate = sub.add_parser("eval", help="run an app over a COCO set and score its predictions (pycocotools)")
    evaluate.add_argument("app", type=Path, help="the app file (*.app.json)")
    evaluate.add_argument("--annotations", type=Path, required=True, help="COCO annotations JSON")
    evaluate.add_argument("--images", type=Path, required=True, help="folder of the annotated images")
    evaluate.add_argument("--config", action="append", default=[], type=Path, metavar="FILE", help=CONFIG_HELP)
    evaluate.add_argument("--set", action="append", default=[], metavar="NODE/COMPONENT/PARAM=VALUE", help=SET_HELP)
    evaluate.add_argument("--output", type=Path, help="keep the app's outputs here (default: a temp folder)")
    evaluate.add_argument("--workers", type=worker_count, help="worker threads (default: the core count)")
    evaluate.add_argument("--json", type=output_file, help="write AP, AP50, AP75, AR to this JSON file")
    evaluate.set_defaults(func=cmd_eval)

    schemas = sub.add_parser("schemas", help="write the message wire schemas (schemas/messages)")
    schemas.add_argument("--out", type=Path, default=None, help="folder (default: the repo's schemas/messages)")
    schemas.add_argument("--check", action="store_true", help="exit 1 if the files are not up to date")
    schemas.set_defaults(func=cmd_schemas)

    recording_cli.add_commands(sub, _add_app_args, _add_run_args, run_app)  # replay, view, info, export
    channels_cli.add_commands(sub)  # keys
    deploy_cli.add_subcommands(sub)  # package, deploy, remote
    for command in sub.choices.values():  # `graphflow run APP -v` as well as `graphflow -v run APP`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return parser


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    """What running an app takes beyond the app itself (``run``, ``replay``)."""
    parser.add_argument("--duration", type=seconds, help="stop after this many seconds")
    parser.add_argument("--max-ticks", type=positive_int, help="stop after every source component ticked N times")
    parser.add_argument("--workers", type=worker_count, help="worker threads (default: the core count)")
    parser.add_argument("--stats-json", type=output_file, help="also write the job report to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="do not print the job report or the progress line")
    add_viewer_arguments(parser)
    recording_cli.add_run_options(parser)  # --record, --channels, --foxglove, ...


def _add_app_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("app", type=Path, help="the app file (*.app.json)")
    parser.add_argument("--config", action="append", default=[], type=Path, metavar="FILE", help=CONFIG_HELP)
    parser.add_argument("--set", action="append", default=[], metavar="NODE/COMPONENT/PARAM=VALUE", help=SET_HELP)
    parser.add_argument("--input", help="what the app's io.input param is set to (image, folder, video, camera:N)")
    parser.add_argument("--output", help="what the app's io.output param is set to (a folder)")
    parser.add_argument("--on-bad-input", choices=["skip", "stop"],
                        help="an unreadable input file: skip it (the loaders' default) or stop the app")


def _io(args) -> dict[str, str]:
    """--input/--output: values for the params that the app's ``io`` section names."""
    given = {key: value for key, value in (("input", args.input), ("output", args.output)) if value is not None}
    for key, value in given.items():
        if not value.strip():  # '' would mean the current folder to the nodes: never what was meant
            raise AppInvalid([AppError(COMMAND_LINE, f"--{key}", "is empty: give a path")])
        # '~' as the shell would (it does not after '--output='); an unknown ~user stays as written
        given[key] = os.path.expanduser(value)
    if "input" in given and "output" in given:
        out = Path(given["output"])
        if out.is_dir() and out.resolve() in _input_folders(given["input"]):
            raise AppInvalid([AppError(COMMAND_LINE, "--output", f"{args.output} is the folder of the input: "
                                       "outputs named like the inputs would replace them; choose another folder")])
    return given


def _input_folders(source: str) -> set[Path]:
    """The folders that the files ``--input`` stands for lie in: the folder itself, a file's
    folder, or for a glob each matched file's folder."""
    if glob.has_magic(source):
        return {Path(match).resolve().parent for match in glob.glob(source, recursive=True)}
    path = Path(source)
    if not path.exists():
        return set()
    return {(path if path.is_dir() else path.parent).resolve()}


def _bad_input_handlers(spec) -> list[str]:
    """The components that have an ``on_bad_input`` param (the loaders)."""
    return [c.full_name for c in spec.components if "on_bad_input" in spec.types[c.full_name].params()]


def _on_bad_input(spec, value: str | None):
    """--on-bad-input: the spec with every component that has an ``on_bad_input`` param set to it."""
    if value is None:
        return spec
    names = _bad_input_handlers(spec)
    if not names:
        raise AppInvalid([AppError(COMMAND_LINE, "--on-bad-input",
                                   f"no component of {spec.file} has an on_bad_input param")])
    return spec.with_params({name: {"on_bad_input": value} for name in names})


def format_report(report: dict) -> str:
    """The job report as a plain-text table: a row per component, a row per channel and receiver."""
    def ms(value):
        return "-" if value is None else f"{value:.3f}"

    components = report["components"]
    width = max([len("component")] + [len(name) for name in components])
    started = "" if report.get("start_s") is None else f", after {report['start_s']:.2f} s of start()"
    lines = [f"job report ({report['elapsed_s']:.2f} s running{started})", "",
             f"{'component':{width}} {'ticks':>8} {'median ms':>10} {'p90 ms':>10} {'max ms':>10} {'errors':>6}"]
    for name, c in components.items():
        t = c["tick_ms"]
        lines.append(f"{name:{width}} {c['ticks']:>8} {ms(t['median']):>10} {ms(t['p90']):>10} "
                     f"{ms(t['max']):>10} {c['errors']:>6}")
    rows = []  # (channel, receiver, its figures): a channel read by several inputs has a row each
    for name, c in report["channels"].items():
        receivers = c["receivers"] or {"-": {"dropped": 0, "latency_ms": {"median": None, "p90": None}}}
        for receiver, r in receivers.items():
            rows.append((name, receiver, c, r))
    channel_width = max([len("channel")] + [len(row[0]) for row in rows])
    receiver_width = max([len("receiver")] + [len(row[1]) for row in rows])
    lines += ["", f"{'channel':{channel_width}} {'receiver':{receiver_width}} {'messages':>9} {'rate/s':>9} "
                  f"{'drops':>6} {'lat med ms':>10} {'lat p90 ms':>10}"]
    for name, receiver, c, r in rows:
        latency = r["latency_ms"]
        lines.append(f"{name:{channel_width}} {receiver:{receiver_width}} {c['messages']:>9} {c['rate']:>9.1f} "
                     f"{r['dropped']:>6} {ms(latency['median']):>10} {ms(latency['p90']):>10}")
    return "\n".join(lines)


def cmd_run(args) -> int:
    from .app import App

    spec = _on_bad_input(load_app(args.app, args.config, args.set, io=_io(args)), args.on_bad_input)
    io_sets = [f"{target}={value}" for key, value in _io(args).items() for target in spec.io.get(key, ())]
    if args.on_bad_input is not None:  # (for the processes of a split app, as params of their own)
        io_sets += [f"{name}/on_bad_input={args.on_bad_input}" for name in _bad_input_handlers(spec)]
    split = channels_cli.run_split(args, spec, io_sets + list(args.set), format_report)
    if split is not None:
        return split
    return run_app(args, App(spec, workers=args.workers, max_ticks=args.max_ticks))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def run_app(args, app) -> int:
    """Run a built app with the viewer, recorder and report that the run options ask for."""
    try:
        observers = recording_cli.start_observers(args, app)
    except recording_cli.RecordingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    viewer = open_viewer(args)  # binds now; a taken port: one line, and the app runs without it
    view_server = start_view_server(args, app)  # --serve-view: for `graphflow view --connect`
    # SIGTERM (a service manager) and SIGHUP (the terminal closed, an ssh session dropped) stop the
    # app as Ctrl-C does: the graph drains and the writers finish their files.
    previous = {sig: signal.signal(sig, lambda number, _: app.request_stop(signal.Signals(number).name))
                for sig in STOP_SIGNALS}
    progress = ProgressLine(app.components.values()) if not args.quiet else nullcontext()
    try:
        with progress:
            if viewer is None:
                app.run(duration=args.duration)
            else:
                viewer.run(app, duration=args.duration)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        recording_cli.stop_observers(observers)
        if view_server is not None:
            view_server.close()  # the final stats and END to its viewers
    report = app.report()
    written = write_json(args.stats_json, report)
    if not args.quiet and not (app.failure is not None and app.failure.phase == "start"):
        print(format_report(report))  # (an app that never started has nothing to report)
    if app.failure is not None:
        print(f"error: {app.failure}", file=sys.stderr)
    if viewer is not None:
        if app.failure is not None and app.failure.phase == "start":
            viewer.close()  # nothing ran: no last messages to serve
        else:
            viewer.linger()  # the graph ended by itself: serve the last messages until Ctrl-C / --duration
    return 0 if app.failure is None and written else 1


def write_json(path: Path | None, data) -> bool:
    """Write ``data`` to ``path`` (an ``output_file`` argument: checked when parsed, its missing
    folders made now); what still fails (a full disk) is one line. False when it failed."""
    if path is None:
        return True
    try:
        write_atomically(path, json.dumps(data, indent=2).encode())  # its folders made; never half a file
        return True
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return False


def cmd_validate(args) -> int:
    status = 0
    registry = Registry()
    for app in args.apps:
        try:
            spec = load_app(app, args.config, args.set, registry)
        except AppInvalid as exc:
            for error in exc.errors:
                print(f"error: {error}", file=sys.stderr)
            status = 1
            continue
        components, edges = len(spec.components), len(spec.edges)
        print(f"{app}: valid ({components} component{'s' * (components != 1)}, {edges} edge{'s' * (edges != 1)})")
    return status


def cmd_nodes(args) -> int:
    """Every node type's ports (with their message's fields) and params, from the declarations."""
    from .messages import message_types

    registry = Registry()
    problems = registry.load_all()
    for pack in args.module:
        try:
            registry.load_pack(pack, Path.cwd())
        except Exception as exc:
            print(f"error: {load_error(pack, exc)}", file=sys.stderr)
            return 1
    described = [d for d in registry.describe_all() if not args.filter or args.filter in d["type"]]
    if args.filter and not described:
        print(f"error: no node type matches {args.filter!r} (graphflow nodes lists them all)", file=sys.stderr)
        return 1
    if args.json:
        messages = {name: cls.describe() for name, cls in sorted(message_types().items())}
        print(json.dumps({"nodes": described, "messages": messages, "problems": problems}, indent=2))
        return 0
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    types = message_types()
    for node in described:
        print(node["type"])
        for line in node["doc"].splitlines():
            print(f"    {line}")
        for port in node["ports"]:
            arrow = "<-" if port["direction"] == "rx" else "->"
            queue = f"  [queue {port['queue_size']}, {port['policy']}]" if port["direction"] == "rx" else ""
            print(f"  {arrow} {port['name']}: {port['message']}{queue}  {port['doc']}")
            message = types.get(port["message"])
            for name, declared in (message.describe()["fields"].items() if message else ()):
                print(f"       .{name}: {declared['type']}  {declared['doc']}")
        for name, param in node["params"].items():
            default = "required" if param["required"] else f"= {json.dumps(param['default'])}"
            if param["type"] == "period" and isinstance(param["default"], (int, float)):
                default += " s"  # parsed from "10Hz", "50ms": a number of seconds
            limits = _range_text(param["range"]) if "range" in param else ""
            limits += f" one of {param['choices']}" if "choices" in param else ""
            limits += " (at start only)" if param.get("live") is False else ""
            print(f"  * {name}: {param['type']} {default}{limits}  {param['doc']}")
        print()
    return 0


def _range_text(limits: list) -> str:
    low, high = limits
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    return f" >= {low}" if low is not None else f" <= {high}"


def cmd_graph(args) -> int:
    from .channels.processes import node_processes, uses_processes
    from .diagram import to_dot, to_mermaid
    from .loader import read_json

    spec = load_app(args.app)
    data = read_json(args.app)
    processes = node_processes(data, spec) if uses_processes(data) else None
    print(to_dot(spec, processes) if args.format == "dot" else to_mermaid(spec, processes))
    return 0


def cmd_bench(args) -> int:
    from .evaluation import benchmark

    try:
        result = benchmark(args.app, args.frames, args.config, args.set, args.workers, io=_io(args))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{result['app']}: {result['frames']} frames in {result['seconds']:.2f} s = "
          f"{result['frames_per_s']:.2f} frames/s ({result['drops']} messages dropped)")
    print(f"{'component':44} {'ticks':>6} {'median ms':>10} {'p90 ms':>10}")
    for name, node in result["nodes"].items():
        median = "-" if node["median_ms"] is None else f"{node['median_ms']:.2f}"
        p90 = "-" if node["p90_ms"] is None else f"{node['p90_ms']:.2f}"
        print(f"{name:44} {node['ticks']:>6} {median:>10} {p90:>10}")
    return 0 if write_json(args.json, result) else 1


def cmd_eval(args) -> int:
    from .evaluation import EvaluationInterrupted, evaluate_coco

    try:
        result = evaluate_coco(args.app, args.annotations, args.images, args.config, args.set,
                               args.workers, args.output)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 130 if isinstance(exc, EvaluationInterrupted) else 1
    images, annotated = result["images"], result["annotated_images"]
    print(f"{args.app}: {result['predictions']} predictions on {images} image{'s' * (images != 1)}"
          + (f" (of {annotated} annotated: {annotated - images} not evaluated)" if images < annotated else ""))
    print("  ".join(f"{key} {result[key]:.3f}" for key in ("AP", "AP50", "AP75", "AR")))
    return 0 if write_json(args.json, {key: result[key] for key in ("AP", "AP50", "AP75", "AR")}) else 1


def cmd_schemas(args) -> int:
    from .loader import SCHEMA_DIR
    from .messages import message_types
    from .wire import frame_schema, header_schema

    registry = Registry()
    registry.load_all()
    packs = tuple(module.__name__.rpartition(".")[0] or module.__name__ for module in registry.packs.values())
    out = args.out or SCHEMA_DIR / "messages"
    files = {"header.schema.json": header_schema()}
    for name, cls in message_types().items():
        if cls.__module__.startswith(packs):  # only installed packs, not types a test defined
            files[f"{name.replace('/', '.')}.schema.json"] = frame_schema(cls)
    stale = []
    for filename, schema in sorted(files.items()):
        text = json.dumps(schema, indent=2) + "\n"
        path = out / filename
        if not path.exists() or path.read_text() != text:
            stale.append(filename)
            if not args.check:
                out.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if args.check:
        for filename in stale:
            print(f"out of date: {out / filename} (run: graphflow schemas)", file=sys.stderr)
        if not stale:
            print(f"all {len(files)} schemas in {out} are up to date")
        return 1 if stale else 0
    print(f"wrote {len(stale)} of {len(files)} schemas to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
