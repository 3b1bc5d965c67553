"""The command line's part for channels: ``graphflow keys`` and the process options of ``run``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--process", metavar="NAME",
                     help="run only this process of an app split into processes (the others run elsewhere)")
    run.add_argument("--single-process", action="store_true",
                     help="run an app split into processes in this one process")
    run.add_argument("--insecure", action="store_true",
                     help="let channels bind off loopback without CURVE keys")


def add_commands(sub) -> None:
    keys = sub.add_parser("keys", help="make a CURVE key pair for channels across hosts")
    keys.add_argument("name", help="the pair's name: NAME.key (public) and NAME.key_secret are written")
    keys.add_argument("--dir", type=Path, default=Path("keys"), help="folder to write them to (default ./keys)")
    keys.add_argument("--force", action="store_true", help="replace a pair of that name (its peers then need "
                                                           "the new public key)")
    keys.set_defaults(func=cmd_keys)


def cmd_keys(args) -> int:
    from .security import make_keys

    name = args.name
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        print(f"error: keys: {name!r} is not a plain file name (letters, digits, '-', '_'; no '/', "
              f"no leading '.')", file=sys.stderr)
        return 2
    if name.endswith((".key", ".key_secret")):  # 'keys dev.key' wrote dev.key.key
        print(f"error: keys: give the name without its ending: {name.rsplit('.', 1)[0]!r} makes "
              f"{name.rsplit('.', 1)[0]}.key and {name.rsplit('.', 1)[0]}.key_secret", file=sys.stderr)
        return 2
    if args.dir.exists() and not args.dir.is_dir():
        print(f"error: keys: --dir {args.dir} is a file, not a folder", file=sys.stderr)
        return 1
    existing = [path for path in (args.dir / f"{name}.key", args.dir / f"{name}.key_secret") if path.exists()]
    if existing and not args.force:
        print(f"error: keys: {existing[0]} exists; the peers that have its public key would be refused with a "
              f"new one. Give --force to replace it, or another name", file=sys.stderr)
        return 1
    try:
        public, secret = make_keys(name, args.dir)
    except OSError as exc:
        print(f"error: keys: cannot write to --dir {args.dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"public key: {public}  (give it to the other end)")
    print(f"secret key: {secret}  (keep it on this host)")
    return 0


def run_split(args, spec, sets: list[str], format_report) -> int | None:
    """Run an app that names processes; None when it names none (or --single-process)."""
    from ..loader import read_json
    from .processes import run_app, uses_processes
    from .security import INSECURE_ENV

    if args.insecure:
        os.environ[INSECURE_ENV] = "1"
    data = read_json(Path(args.app))
    if args.single_process and args.process:
        print("error: --process runs one process of a split app, --single-process runs the whole app in one: "
              "give one of them", file=sys.stderr)
        return 2
    if args.single_process or not uses_processes(data):
        if args.process:
            print(f"error: --process {args.process}: {args.app} names no processes", file=sys.stderr)
            return 2  # a bad command line
        return None
    return run_app(args, data, spec, sets, format_report)
