"""The ``package``, ``deploy`` and ``remote`` subcommands (hooked into graphflow/cli.py)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ..arguments import checked, tcp_port
from . import DeployError
from .targets import TARGETS, default_target

# --keep: the current release is always kept, so fewer than 1 means nothing
releases_kept = checked(int, lambda value: value >= 1, "a number of releases, at least 1")

REMOTE_VERBS = ["doctor", "status", "logs", "start", "stop", "restart", "rollback", "list", "prune", "view"]


def add_subcommands(sub) -> None:
    package = sub.add_parser("package", help="write an app, its packs, models and pinned requirements "
                                             "into one NAME-VERSION.gfpkg (or --check one)")
    package.add_argument("app", type=Path, help="the app file, or with --check the .gfpkg file")
    package.add_argument("-o", "--out", type=Path, default=Path("dist"), help="folder for the package (default dist/)")
    package.add_argument("--target", choices=sorted(TARGETS), default=None,
                         help=f"device kind (default: {default_target()}; with --check: the package's)")
    package.add_argument("--version", default="0.0.0", help="the app's version (default 0.0.0)")
    package.add_argument("--config", action="append", default=[], type=Path, metavar="FILE",
                         help="config overlay merged into the packaged app (repeatable)")
    package.add_argument("--wheelhouse", action="store_true",
                         help="include every wheel the target needs, so the device installs offline (needs PyPI here)")
    package.add_argument("--extra", action="append", default=[], metavar="NAME",
                         help="also install this graphflow extra on the device (cpu and jit always are; e.g. eval)")
    package.add_argument("--graphflow-wheel", type=Path, help="ship this graphflow wheel instead of building one")
    package.add_argument("--check", action="store_true",
                         help="verify a package's hashes and that its wheelhouse resolves offline for the target")
    package.set_defaults(func=cmd_package)

    deploy = sub.add_parser("deploy", help="install a package on devices over ssh and switch to it")
    deploy.add_argument("package", type=Path, help="the .gfpkg file (graphflow package)")
    deploy.add_argument("--to", action="append", required=True, metavar="[USER@]HOST[:DIR]",
                        help="a device (repeatable), or an inventory file with one a line; DIR default ~/graphflow")
    _add_ssh_args(deploy)
    mode = deploy.add_mutually_exclusive_group()
    mode.add_argument("--service", action="store_true", help="install and (re)start a systemd user unit")
    mode.add_argument("--foreground", action="store_true", help="run the app attached; Ctrl-C stops it on the device")
    deploy.add_argument("--keep", type=releases_kept, default=3,
                        help="releases kept on the device, the current one included (default 3)")
    deploy.add_argument("--reuse-system-packages", action="store_true",
                        help="the device's own Python packages serve the requirements: a venv with "
                             "--system-site-packages, and only the app's wheels installed (--no-deps); "
                             "when --python is a venv, its packages serve too")
    deploy.add_argument("--bwlimit", type=int, metavar="KBPS", help="limit the upload rate (KB/s)")
    deploy.add_argument("--app-args", default=None, metavar="ARGS",
                        help="arguments for `graphflow run` on the device, split like a shell would "
                             "(no shell runs them), e.g. --app-args '--input camera:0' or --app-args=--no-viewer "
                             "(one option alone needs =); default: those the current release runs with")
    deploy.set_defaults(func=cmd_deploy)

    remote = sub.add_parser("remote", help="operate a deployed device: " + ", ".join(REMOTE_VERBS))
    remote.add_argument("verb", choices=REMOTE_VERBS, help="what to do")
    remote.add_argument("target", metavar="[USER@]HOST[:DIR]", help="the device (DIR: its graphflow folder, default ~/graphflow)")
    _add_ssh_args(remote)
    remote.add_argument("-f", "--follow", action="store_true", help="logs: keep following")
    remote.add_argument("--keep", type=releases_kept, default=3,
                        help="prune: releases kept: the current one and the N-1 most recently installed others "
                             "(default 3)")
    remote.add_argument("--port", type=tcp_port, default=3000, help="view: local port of the tunnel (default 3000)")
    remote.add_argument("--remote-port", type=tcp_port, default=3000,
                        help="view: the viewer's port on the device's loopback (default 3000, graphflow run's)")
    remote.set_defaults(func=cmd_remote)


def _add_ssh_args(parser) -> None:
    parser.add_argument("--ssh-config", type=Path, metavar="FILE", help="ssh config file (ssh -F)")
    parser.add_argument("--python", default="python3", help="the device's Python (default python3)")


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def _interrupted() -> int:
    print("interrupted: an install already under way on the device completes there (it switches the release "
          "and restarts its service); one not yet begun does not. Run the same command again: it resumes, or "
          "finds the release installed", file=sys.stderr)
    return 130


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_package(args) -> int:
    from .package import build_package, check_package

    try:
        if args.check:
            problems = check_package(args.app, args.target, progress=_progress)
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            if not problems:
                print(f"{args.app}: ok")
            return 1 if problems else 0
        result = build_package(args.app, args.out, target=args.target or default_target(), version=args.version,
                               overlays=args.config, wheelhouse=args.wheelhouse,
                               graphflow_wheel=args.graphflow_wheel, extras=args.extra, progress=_progress)
    except DeployError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        print("interrupted: no package written", file=sys.stderr)
        return 130
    print(f"wrote {result} ({result.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_deploy(args) -> int:
    from .package import read_manifest
    from .remote import DeployOptions, deploy
    from .transport import check_local_path

    try:
        try:
            run_args = None if args.app_args is None else shlex.split(args.app_args)
        except ValueError as exc:
            raise DeployError(f"--app-args: {exc}") from None
        if args.package.is_dir():
            raise DeployError(f"package {str(args.package)!r} is a folder, not a .gfpkg file "
                              f"(`graphflow package` writes NAME-VERSION.gfpkg into it)")
        check_local_path(args.package, "package")
        read_manifest(args.package)
        options = DeployOptions(ssh_config=check_local_path(args.ssh_config, "ssh config"), keep=args.keep,
                                service=args.service, foreground=args.foreground, run_args=run_args,
                                python=args.python, reuse_system_packages=args.reuse_system_packages,
                                bwlimit=args.bwlimit)
        return deploy(args.package, args.to, options)
    except DeployError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        return _interrupted()


def cmd_remote(args) -> int:
    from .remote import remote
    from .transport import check_local_path

    try:
        return remote(args.verb, args.target, check_local_path(args.ssh_config, "ssh config"), python=args.python,
                      follow=args.follow, keep=args.keep, local_port=args.port,
                      remote_port=args.remote_port)
    except DeployError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        return _interrupted()
