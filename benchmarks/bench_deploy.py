"""Package and deploy timings through a real sshd on 127.0.0.1 (the test sshd of tests/deploy).

    GRAPHFLOW_MODEL_PATH=../shared/models python benchmarks/bench_deploy.py [--wheelhouse]

Measures: packaging the OpenPose app (linux-x86_64), a first deploy, a rerun of the same deploy
(nothing to do), a redeploy of a changed version (a config overlay: one file uploaded), and a
rollback. Without --wheelhouse the device venv reuses this machine's packages
(--reuse-system-packages); with it the package carries every wheel (PyPI is needed here) and
the device venv installs them offline, as a device without internet does.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.deploy.sshd import running_sshd  # noqa: E402


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}")
    return seconds, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheelhouse", action="store_true", help="ship every wheel; the device installs offline")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    graphflow = [sys.executable, "-m", "graphflow.cli"]
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as temp:
        temp = Path(temp)
        overlay = temp / "overlay.json"
        overlay.write_text(json.dumps({"viz": {"visualizer": {"min_confidence": 0.2}}}))
        extra = ["--wheelhouse"] if args.wheelhouse else []
        seconds, _ = timed(graphflow + ["package", "apps/openpose.app.json", "-o", str(temp / "v1"), "--version",
                                        "1.0.0", "--target", "linux-x86_64", *extra])
        v1 = temp / "v1" / "openpose-1.0.0.gfpkg"
        figures["package"] = {"s": seconds, "MB": v1.stat().st_size / 1e6}
        seconds, _ = timed(graphflow + ["package", "apps/openpose.app.json", "-o", str(temp / "v2"), "--version",
                                        "1.1.0", "--target", "linux-x86_64", "--config", str(overlay), *extra])
        v2 = temp / "v2" / "openpose-1.1.0.gfpkg"
        seconds, _ = timed(graphflow + ["package", "--check", str(v1)])
        figures["package --check"] = {"s": seconds}
        with running_sshd(temp / "sshd") as device:
            where = f"device:{temp / 'device'}"
            ssh = ["--ssh-config", str(device.config), "--python", device.python]
            to = [f"--to={where}", *ssh] + ([] if args.wheelhouse else ["--reuse-system-packages"])
            for name, package in (("first deploy", v1), ("same deploy again", v1), ("changed version", v2)):
                seconds, result = timed(graphflow + ["deploy", str(package), *to])
                figures[name] = {"s": seconds, "summary": result.stdout.strip().splitlines()[-1]}
            seconds, _ = timed(graphflow + ["remote", "rollback", *ssh, "--", where])
            figures["rollback"] = {"s": seconds}
    print(f"{'step':20} {'seconds':>8}  details")
    for name, figure in figures.items():
        details = f"{figure['MB']:.1f} MB" if "MB" in figure else figure.get("summary", "")
        print(f"{name:20} {figure['s']:8.2f}  {details}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
