"""One app, several OS processes: split an app file by its nodes' ``"process"``, and run the parts.

:func:`split` takes the app file's data (and the whole app, validated) and returns one app per
process: each keeps its own nodes, the edges between them and their config; every edge that
crosses processes becomes a ``net.Publisher`` in the source's process and a ``net.Subscriber``
in the target's, joined by an ``ipc://`` endpoint (one host) or ``tcp://HOST:PORT`` (a process
with a ``host``), the edge's queue size and policy applied across the wire.

:class:`Supervisor` runs those apps as ``graphflow run`` children, passes each its ``--set``
values, prefixes their log lines with the process name, stops them together (Ctrl-C, SIGTERM,
``--duration``, or any one failing; a process with ``"restart": true`` is started again
instead), removes the shared-memory segments of any child that died, and prints one job report.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..files import RESUMING_ENV
from . import shm

MAIN = "main"
DEFAULT_PORT = 5560
BRIDGE_PACK = "net"
# Before its graph ticks, a process waits this long for the subscriber of each edge it publishes
# (a process that loads a model or compiles kernels in start() takes seconds to connect), so that
# the first messages are not lost to the queue policy of a subscriber still starting.
AWAIT_SUBSCRIBER_S = 30.0


class SplitError(ValueError):
    """An app whose processes cannot be split as written; the text says where."""


@dataclass
class Part:
    """One process of a split app."""
    name: str
    app: dict
    nodes: list[str]
    publishers: list[str] = field(default_factory=list)
    subscribers: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    crossings: list[dict] = field(default_factory=list)  # the edges it sends to other processes


def uses_processes(data: dict) -> bool:
    nodes = data.get("graph", {}).get("nodes", []) if isinstance(data, dict) else []
    return bool(isinstance(data, dict) and (data.get("processes")
                                            or any(isinstance(n, dict) and "process" in n for n in nodes)))


def _top_node(endpoint: str, names: list[str]) -> str | None:
    node = endpoint.rsplit("/", 2)[0]
    for name in sorted(names, key=len, reverse=True):
        if node == name or node.startswith(name + "."):
            return name
    return None


def _resolved(spec, edge: dict, index: int, names: list[str]) -> list:
    """The expanded edges (component port to component port) that app edge ``index`` stands for.
    An edge into a subgraph's interface keeps the app file's path; one out of an interface is
    recorded at the subgraph's inner edge that feeds it, so it is found by its two ends."""
    by_path = [e for e in spec.edges if e.file == spec.file and e.path == f"$.graph.edges[{index}]"]
    if by_path:
        return by_path
    source_top, target_top = _top_node(edge["source"], names), _top_node(edge["target"], names)

    def same(expanded: str, written: str) -> bool:
        return ".interface/" in written or expanded == written

    return [e for e in spec.edges if _top_node(e.source, names) == source_top and _top_node(e.target, names) == target_top
            and same(e.source, edge["source"]) and same(e.target, edge["target"])]


def node_processes(data: dict, spec) -> dict[str, str]:
    """The process each node of ``spec`` runs in (nodes of a subgraph: its node's)."""
    where = {node["name"]: node.get("process", MAIN) for node in data["graph"]["nodes"]}
    names = list(where)
    return {c.node: where.get(_top_node(c.full_name + "/port", names), MAIN) for c in spec.components}


def split(data: dict, app_file: Path, spec, run_dir: Path) -> dict[str, Part]:
    """Per process, an app dict (see the module doc). ``spec`` is the validated whole app (a
    :class:`graphflow.loader.AppSpec`): it gives each crossing edge's message type and queue."""
    from ..loader.validate import carried

    base = app_file.resolve().parent
    nodes = data["graph"]["nodes"]
    edges = data["graph"].get("edges", [])
    options = data.get("processes", {})
    where = {node["name"]: node.get("process", MAIN) for node in nodes}
    named = set(where.values())
    for name in options:
        if name not in named:
            import difflib
            hint = ""
            for typo in difflib.get_close_matches(name, sorted(named - set(options)), n=3):
                where_typo = ", ".join(str(i) for i, node in enumerate(nodes) if node.get("process") == typo)
                hint += f"; $.graph.nodes[{where_typo}] name process {typo!r}: did you mean {name!r}?"
            raise SplitError(f"{app_file}: $.processes.{name}: no node runs in process {name!r} "
                             f"(processes named by nodes: {sorted(named)}){hint}")
    names = list(where)
    app_name = data.get("name", app_file.stem)

    parts: dict[str, Part] = {}
    for process in sorted(named, key=lambda p: (p != MAIN, p)):
        app = {key: copy.deepcopy(value) for key, value in data.items()
               if key not in ("graph", "config", "io", "ui_config", "processes", "$schema")}
        app["name"] = f"{app_name}.{process}"
        modules = [m if not (m.endswith(".py") or "/" in m) else str((base / m).resolve())
                   for m in data.get("modules", [])]
        app["modules"] = modules + ([BRIDGE_PACK] if BRIDGE_PACK not in modules else [])
        own = []
        for node in nodes:
            if where[node["name"]] != process:
                continue
            node = {key: copy.deepcopy(value) for key, value in node.items() if key != "process"}
            if "subgraph" in node:
                node["subgraph"] = str((base / node["subgraph"]).resolve())
            own.append(node)
        config = {key: copy.deepcopy(value) for key, value in data.get("config", {}).items()
                  if where.get(_top_node(key + "/c/p", names)) == process}
        windows = {name: window for name, window in data.get("ui_config", {}).get("windows", {}).items()
                   if all(where.get(_top_node(c["name"], names)) == process for c in window.get("channels", []))}
        app["graph"] = {"nodes": own, "edges": []}
        app["config"] = config
        if windows:
            app["ui_config"] = {"windows": windows}
        parts[process] = Part(process, app, [n["name"] for n in own], options=dict(options.get(process, {})))

    # crossing edges, grouped by (source port, target process): one publisher and one subscriber each
    groups: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    for index, edge in enumerate(edges):
        source, target = where.get(_top_node(edge["source"], names)), where.get(_top_node(edge["target"], names))
        if source == target:
            parts[source].app["graph"]["edges"].append(copy.deepcopy(edge))
        else:
            groups.setdefault((edge["source"], target), []).append((index, edge))
    for number, ((source_port, target_process), members) in enumerate(sorted(groups.items())):
        source_process = where[_top_node(source_port, names)]
        index, edge = members[0]
        resolved = _resolved(spec, edge, index, names)
        if not resolved:
            raise SplitError(f"{app_file}: $.graph.edges[{index}]: cannot cross processes (it connects "
                             f"nothing after subgraphs are expanded)")
        if len({e.source for e in resolved}) > 1:
            raise SplitError(f"{app_file}: $.graph.edges[{index}]: an edge between two subgraphs' interfaces "
                             f"cannot cross processes here (it stands for several ports); connect a "
                             f"component's port on one side")
        first = resolved[0]
        source_component, port_name = first.source.rsplit("/", 1)
        message_type = carried(spec.types[source_component], first.source,
                               spec.types[source_component].ports()[port_name], spec.params_of(source_component))
        target_component, target_port = first.target.rsplit("/", 1)
        declared = spec.types[target_component].ports()[target_port]
        queue = members[0][1].get("queue") or {}
        size, policy = queue.get("size", declared.queue_size), queue.get("policy", declared.policy)
        endpoint, connect = _endpoints(app_name, number, parts[source_process].options, run_dir)
        keys = _keys(parts, source_process, target_process)
        tx_node, rx_node = f"net.tx{number}", f"net.rx{number}"
        publisher = {"endpoint": endpoint, "message_type": message_type.wire_name, "queue_size": size,
                     "policy": policy, "await_subscriber": AWAIT_SUBSCRIBER_S, **keys["publisher"]}
        subscriber = {"endpoint": connect, "message_type": message_type.wire_name, "queue_size": size,
                      **keys["subscriber"]}
        source_part, target_part = parts[source_process], parts[target_process]
        source_part.app["graph"]["nodes"].append(
            {"name": tx_node, "components": [{"name": "publisher", "type": "net.Publisher"}]})
        source_part.app["graph"]["edges"].append(
            {"source": source_port, "target": f"{tx_node}/publisher/message", "queue": {"size": size, "policy": policy}})
        source_part.app["config"][tx_node] = {"publisher": publisher}
        source_part.publishers.append(f"{tx_node}/publisher")
        target_part.app["graph"]["nodes"].append(
            {"name": rx_node, "components": [{"name": "subscriber", "type": "net.Subscriber"}]})
        for _, edge in members:
            crossing = {"source": f"{rx_node}/subscriber/message", "target": edge["target"]}
            if "queue" in edge:
                crossing["queue"] = copy.deepcopy(edge["queue"])
            target_part.app["graph"]["edges"].append(crossing)
        target_part.app["config"][rx_node] = {"subscriber": subscriber}
        target_part.subscribers.append(f"{rx_node}/subscriber")
        source_part.crossings.append({
            "source": source_port, "channel": first.source,  # (the component port behind an interface)
            "targets": [edge["target"] for _, edge in members], "from": source_process,
            "to": target_process, "message": message_type.wire_name, "endpoint": endpoint,
            "queue": {"size": size, "policy": policy}, "publisher": f"{tx_node}/publisher/message",
            "subscriber": f"{rx_node}/subscriber/message"})
    return parts


def _endpoints(app_name: str, number: int, options: dict, run_dir: Path) -> tuple[str, str]:
    """(what the publisher binds, what the subscriber connects to)."""
    host = options.get("host")
    if host:
        port = int(options.get("port", DEFAULT_PORT)) + number
        return f"tcp://{host}:{port}", f"tcp://{host}:{port}"
    path = run_dir / f"{app_name}-{number}.sock"
    return f"ipc://{path}", f"ipc://{path}"


def _keys(parts: dict[str, Part], source: str, target: str) -> dict:
    """CURVE settings from the processes' ``keys`` folders: NAME.key_secret for its own end,
    the other end's NAME.key."""
    source_keys, target_keys = parts[source].options.get("keys"), parts[target].options.get("keys")
    if not source_keys:
        return {"publisher": {}, "subscriber": {}}
    if not target_keys:
        raise SplitError(f"process {source!r} has CURVE keys but {target!r}, which subscribes to it, has none")
    return {"publisher": {"curve_secret_key": str(Path(source_keys) / f"{source}.key_secret"),
                          "curve_clients": str(Path(source_keys))},
            "subscriber": {"curve_server_key": str(Path(target_keys) / f"{source}.key"),
                           "curve_secret_key": str(Path(target_keys) / f"{target}.key_secret")}}


def route_configs(overlays: list[Path], parts: dict[str, Part], run_dir: Path) -> dict[str, list[Path]]:
    """``--config FILE`` split by the process that runs each node (one file per process)."""
    names = [n for part in parts.values() for n in part.nodes]
    merged: dict[str, list[Path]] = {name: [] for name in parts}
    for number, overlay in enumerate(overlays):
        try:
            data = json.loads(Path(overlay).read_text())
        except (OSError, ValueError) as exc:
            raise SplitError(f"--config {overlay}: {exc}") from None
        if isinstance(data, dict) and "graph" in data:
            data = data.get("config", {})
        if not isinstance(data, dict):
            raise SplitError(f"--config {overlay}: expected an object: node -> component -> param -> value")
        for part in parts.values():
            own = {key: value for key, value in data.items() if _top_node(key + "/c/p", names) in part.nodes}
            if own:
                file = run_dir / f"{part.name}.config{number}.json"
                file.write_text(json.dumps(own))
                merged[part.name].append(file)
    return merged


def route_sets(sets: list[str], parts: dict[str, Part]) -> dict[str, list[str]]:
    """``--set node/component/param=value`` to the process that runs that node."""
    names = [n for part in parts.values() for n in part.nodes]
    routed: dict[str, list[str]] = {name: [] for name in parts}
    for text in sets:
        key = text.partition("=")[0]
        node = _top_node(key, names)
        owner = next((p.name for p in parts.values() if node in p.nodes), None)
        if owner is None:
            raise SplitError(f"--set {text}: no process runs node {key.rsplit('/', 2)[0]!r}")
        routed[owner].append(text)
    return routed


# -- running -----------------------------------------------------------------------------------
class Supervisor:
    """Runs the parts of a split app as ``graphflow run`` children and stops them together."""

    def __init__(self, parts: dict[str, Part], run_dir: Path, *, sets: dict[str, list[str]],
                 configs: dict[str, list[Path]] | None = None,
                 duration: float | None = None, max_ticks: int | None = None, workers: int | None = None,
                 verbose: bool = False, stream=sys.stderr, view_endpoints: dict[str, str] | None = None,
                 extra_args: list[str] | None = None):
        self.parts = parts
        self.view_endpoints = view_endpoints or {}  # process → where it serves its view (the viewer's)
        self.extra_args = extra_args or []  # run options passed on as they are (recording)
        self.run_dir = run_dir
        self.sets = sets
        self.configs = configs or {}
        self.duration = duration
        self.max_ticks = max_ticks
        self.workers = workers
        self.verbose = verbose
        self.stream = stream
        self.children: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {name: 0 for name in parts}
        self.failure: str | None = None
        self.said_failure = False  # the failure was printed as it happened
        self._ended: set[str] = set()
        self._terminated: set[str] = set()  # the processes sent a SIGTERM to stop
        self._stop = threading.Event()
        self._hurry = threading.Event()  # a second stop request: no waiting for the drain
        self._print_lock = threading.Lock()

    def _command(self, part: Part) -> list[str]:
        file = self.run_dir / f"{part.name}.app.json"
        file.write_text(json.dumps(part.app, indent=2))
        command = _graphflow_command() + (["-v"] if self.verbose else []) + [
            "run", str(file), "--no-viewer", "--quiet", "--stats-json", str(self.run_dir / f"{part.name}.stats.json")]
        for overlay in self.configs.get(part.name, []):
            command += ["--config", str(overlay)]
        for text in self.sets.get(part.name, []):
            command += ["--set", text]
        if self.max_ticks is not None and not part.subscribers:
            command += ["--max-ticks", str(self.max_ticks)]  # a subscriber ends when its publisher does
        if self.workers is not None:
            command += ["--workers", str(self.workers)]
        if part.name in self.view_endpoints:
            command += ["--serve-view", self.view_endpoints[part.name]]
        return command + self.extra_args

    def _spawn(self, part: Part, resuming: bool = False) -> None:
        env = dict(os.environ, **({RESUMING_ENV: "1"} if resuming else {}))  # its writers add to their files
        if not resuming:
            env.pop(RESUMING_ENV, None)
        child = subprocess.Popen(self._command(part), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, bufsize=1, start_new_session=True, preexec_fn=_die_with_parent, env=env)
        self.children[part.name] = child
        threading.Thread(target=self._relay, args=(part.name, child), daemon=True).start()

    def _relay(self, name: str, child: subprocess.Popen) -> None:
        for line in child.stdout:
            with self._print_lock:
                self.stream.write(f"[{name}] {line}")
                self.stream.flush()

    def request_stop(self, *_) -> None:
        """Ctrl-C, SIGTERM, SIGHUP: stop the app as one graph (see :meth:`_stop_in_order`); a second
        request stops every process at once."""
        if self._stop.is_set():
            self._hurry.set()
        self._stop.set()

    @property
    def stopped_by_user(self) -> bool:
        return self._stop.is_set()

    def run(self) -> int:
        """Start every part, wait; returns the exit status (0: every process ended cleanly)."""
        for part in self.parts.values():
            self._spawn(part)
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        deadline = None if self.duration is None else time.monotonic() + self.duration
        try:
            while True:
                if self._stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    if self._stop.is_set():
                        self._say("stopping: each process drains what the processes feeding it sent "
                                  "(Ctrl-C again to stop at once)")
                    self._stop_in_order()
                    break
                running = False
                for name, child in list(self.children.items()):
                    code = child.poll()
                    if code is None:
                        running = True
                        continue
                    if code == 0 or name in self._ended:
                        self._ended.add(name)
                        continue
                    self._sweep(child.pid)
                    how = (f"was killed by {signal.Signals(-code).name}" if code < 0
                           else f"exited with status {code}")
                    if self.parts[name].options.get("restart") and self.restarts[name] < 5:
                        self.restarts[name] += 1
                        self._say(f"process {name!r} (pid {child.pid}) {how}; restarting it "
                                  f"({self.restarts[name]} of 5)")
                        self._spawn(self.parts[name], resuming=True)
                        running = True
                        continue
                    self.failure = f"process {name!r} (pid {child.pid}) {how}; stopping the app"
                    self._say(f"error: {self.failure}")
                    self.said_failure = True
                    self._terminate_all()
                    return 1
                if not running:
                    break
                time.sleep(0.05)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for child in self.children.values():
                self._sweep(child.pid)
        # (a process stopped by the SIGTERM sent to it, before it could take the signal: a stop, not a failure)
        asked = (-signal.SIGTERM, -signal.SIGINT)
        failed = {name: child.returncode for name, child in self.children.items()
                  if child.returncode not in (0, None) and not (name in self._terminated and child.returncode in asked)}
        if failed and self.failure is None:
            self.failure = "; ".join(f"process {name!r} exited with status {code}" for name, code in failed.items())
        return 0 if not failed else 1

    def _say(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.stream, flush=True)

    def _upstream(self) -> dict[str, set[str]]:
        """Process → the processes that send to it."""
        feeders: dict[str, set[str]] = {name: set() for name in self.parts}
        for part in self.parts.values():
            for crossing in part.crossings:
                if crossing["to"] in feeders:
                    feeders[crossing["to"]].add(crossing["from"])
        return feeders

    def _stop_in_order(self, drain: float = 10.0, grace: float = 20.0, hurried_grace: float = 8.0) -> None:
        """Stop the app as one graph, so that no message in flight between processes is lost:
        first the processes nothing feeds (SIGTERM: their sources stop, their graphs drain into
        their publishers, which flush and end); a process fed by others is left to end by itself
        once they have all ended (its subscribers end with their publishers, after the last
        message), and gets a SIGTERM if it still runs ``drain`` s later (a source of its own).
        Where processes feed each other in a ring, the ring gets its SIGTERMs together. A second
        stop request sends every process a SIGTERM now (a second one ends a drain at once). A
        process still running ``grace`` s after its SIGTERM (``hurried_grace`` after a second
        request) is killed."""
        feeders = self._upstream()
        kill_at: dict[str, float] = {}  # process → when it is killed if still running (it got a SIGTERM)
        free_since: dict[str, float] = {}  # process → since when nothing that feeds it runs
        hurried = False
        while True:
            alive = {name for name, child in self.children.items() if child.poll() is None}
            if not alive:
                return
            now = time.monotonic()
            if self._hurry.is_set() and not hurried:
                hurried = True
                for name in alive:
                    self._terminate(name)
                    kill_at[name] = min(kill_at.get(name, now + hurried_grace), now + hurried_grace)
            waiting = [name for name in alive if name not in kill_at]
            free = [name for name in waiting if not feeders[name] & alive]
            for name in free:
                since = free_since.setdefault(name, now)
                # A feeder that did not end cleanly (stopped before it could say its stream ended)
                # sends no end: nothing to drain for.
                unended = any(self.children[f].returncode not in (0, None) for f in feeders[name])
                if not feeders[name] or unended or now - since >= drain:
                    self._terminate(name)
                    kill_at[name] = now + grace
            if waiting and not free and not any(name in alive for name in kill_at):
                for name in waiting:  # a ring of processes feeding each other
                    self._terminate(name)
                    kill_at[name] = now + grace
            for name, when in kill_at.items():
                if name in alive and now > when:
                    child = self.children[name]
                    self._say(f"process {name!r} (pid {child.pid}) did not stop in time; killing it")
                    self._kill(child)
            time.sleep(0.05)

    def _terminate(self, name: str) -> None:
        self._terminated.add(name)
        try:
            os.killpg(self.children[name].pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    @staticmethod
    def _kill(child: subprocess.Popen) -> None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()

    def _terminate_all(self, grace: float = 8.0) -> None:
        for child in self.children.values():
            if child.poll() is None:
                try:
                    os.killpg(child.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for name, child in self.children.items():
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(f"process {name!r} (pid {child.pid}) did not stop within {grace:.0f} s; killing it")
                self._kill(child)

    def _sweep(self, pid: int) -> None:
        removed = shm.sweep(pid)
        if removed:
            self._say(f"removed {removed} shared-memory segments of process {pid}")

    def report(self) -> dict:
        """Every process's job report, by process name."""
        out = {}
        for name, part in self.parts.items():
            path = self.run_dir / f"{name}.stats.json"
            report = json.loads(path.read_text()) if path.exists() else None
            child = self.children.get(name)
            out[name] = {"pid": child.pid if child else None, "nodes": part.nodes,
                         "restarts": self.restarts[name], "report": report}
        crossings = []
        for part in self.parts.values():
            for crossing in part.crossings:
                sent_report = (out.get(crossing["from"]) or {}).get("report") or {}
                got_report = (out.get(crossing["to"]) or {}).get("report") or {}
                sender = sent_report.get("channels", {}).get(crossing["channel"], {}).get("receivers", {}).get(
                    crossing["publisher"], {})
                receiver = got_report.get("channels", {}).get(crossing["subscriber"], {})
                crossings.append({**crossing, "sent": sender.get("received"), "dropped": sender.get("dropped"),
                                  "received": receiver.get("messages")})
        return {"processes": out, "crossings": crossings}


def _graphflow_command() -> list[str]:
    """A child's ``graphflow`` command line, importing what this process imports: ``python -m``
    would put the current folder first on the child's sys.path, where a checkout's ``graphflow/``
    folder (or a ``ml.py``) would be imported instead of what runs here (then, for one, the
    decoder's kernels compiled anew for that copy, and the processes of one app ran two codes)."""
    first = os.path.abspath(sys.path[0]) if sys.path and sys.path[0] else os.getcwd()
    return [sys.executable, "-c",
            f"import sys; sys.path[0] = {first!r}; from graphflow.cli import main; sys.exit(main())"]


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the supervisor dies, even by kill -9 (Linux)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def format_report(combined: dict, format_one) -> str:
    """The processes' job reports; ``format_one`` formats one (the command line's)."""
    count = len(combined["processes"])
    sections = [f"job report: {count} process{'es' if count != 1 else ''}"]
    for name, entry in combined["processes"].items():
        restarts = f", restarted {entry['restarts']}×" if entry["restarts"] else ""
        sections.append(f"\n== process {name} (pid {entry['pid']}{restarts}): nodes {', '.join(entry['nodes'])}")
        sections.append(format_one(entry["report"]) if entry["report"] else "(no report: it did not end cleanly)")
    if combined.get("crossings"):
        sections.append(f"\nchannels across processes\n{'channel':44} {'from → to':22} {'sent':>8} {'received':>9} "
                        f"{'dropped':>8}  endpoint")
        for c in combined["crossings"]:
            sections.append(f"{c['source']:44} {c['from'] + ' → ' + c['to']:22} {_count(c['sent']):>8} "
                            f"{_count(c['received']):>9} {_count(c['dropped']):>8}  {c['endpoint']}")
    return "\n".join(sections)


def _count(value) -> str:
    return "-" if value is None else str(value)


RUN_DIR_PREFIX = "graphflow-run-"
OWNER_FILE = "supervisor.pid"


def _remove_run_dirs_of_dead_supervisors() -> None:
    """A supervisor killed (kill -9, a crash) leaves its run folder (sockets, app files, stats):
    the next one removes those whose supervisor is gone, as the shared-memory segments are."""
    for folder in Path(tempfile.gettempdir()).glob(RUN_DIR_PREFIX + "*"):
        try:
            pid = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not one of ours, or one being made: left alone
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def run_app(args, data: dict, spec, sets: list[str], format_one) -> int:
    """``graphflow run APP`` for an app with processes (``--process NAME`` runs only that one)."""
    _remove_run_dirs_of_dead_supervisors()
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))
    (run_dir / OWNER_FILE).write_text(str(os.getpid()))
    try:
        parts = split(data, Path(args.app), spec, _shared_dir(data, Path(args.app)) if args.process else run_dir)
        routed = route_sets(sets, parts)
        configs = route_configs(list(args.config), parts, run_dir)
    except SplitError as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.process:
        if args.process not in parts:
            print(f"error: --process {args.process}: the app has no such process (it has: {', '.join(sorted(parts))})",
                  file=sys.stderr)
            shutil.rmtree(run_dir, ignore_errors=True)
            return 2  # a bad command line
        parts = {args.process: parts[args.process]}
    from ..recording.cli import run_options_given

    recording = run_options_given(args)  # (--record, --foxglove and theirs)
    if recording and len(parts) > 1:
        print(f"error: {recording[0]}: with an app split into processes, record one process "
              "(--process NAME), or run the app with --single-process", file=sys.stderr)
        shutil.rmtree(run_dir, ignore_errors=True)
        return 2
    if getattr(args, "serve_view", None):
        if len(parts) > 1:
            print("error: --serve-view: with an app split into processes, serve one process's view "
                  "(--process NAME --serve-view PORT); the viewer of the whole app is the one `graphflow run` serves",
                  file=sys.stderr)
            shutil.rmtree(run_dir, ignore_errors=True)
            return 2
        views = {name: args.serve_view for name in parts}
    else:
        views = {} if args.no_viewer else {name: f"ipc://{run_dir}/{name}.view" for name in parts}
    supervisor = Supervisor(parts, run_dir, sets=routed, configs=configs, duration=args.duration, max_ticks=args.max_ticks,
                            workers=args.workers, verbose=getattr(args, "verbose", False), view_endpoints=views,
                            extra_args=recording)
    viewer = None
    if views and not args.no_viewer and not getattr(args, "serve_view", None):
        from ..viewer.remote import open_split_viewer

        viewer = open_split_viewer(args, spec, {name: part.nodes for name, part in parts.items()}, views)
    try:
        status = supervisor.run()
        combined = supervisor.report()
        if args.stats_json:
            args.stats_json.parent.mkdir(parents=True, exist_ok=True)
            args.stats_json.write_text(json.dumps(combined, indent=2))
        failed_in_start = [name for name, entry in combined["processes"].items()
                           if entry["report"] and entry["report"].get("start_s") is None]
        printed = not args.quiet and not failed_in_start  # (an app that never started has nothing to report)
        if printed:
            print(format_report(combined, format_one), flush=True)
        if supervisor.failure and (printed or not supervisor.said_failure):  # (again below the report)
            print(f"error: {supervisor.failure}", file=sys.stderr, flush=True)
        if viewer is not None and not supervisor.stopped_by_user:
            viewer.linger()  # the app ended by itself: serve its last messages until Ctrl-C / --duration
    finally:
        if viewer is not None:
            viewer.close()
        shutil.rmtree(run_dir, ignore_errors=True)  # the parts' app files, reports and sockets
    return status


def _shared_dir(data: dict, app_file: Path) -> Path:
    """Where the ipc:// endpoints of processes started separately on one host meet."""
    folder = Path(tempfile.gettempdir()) / f"graphflow-{os.getuid()}-{data.get('name', app_file.stem)}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder
