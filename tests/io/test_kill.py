"""Kill tests: the OpenPose app over a COCO image folder, run through the command line as a real
process and stopped by real signals. SIGKILL (a crash, the OOM killer): predictions.jsonl holds
every frame finished before the kill, line by line. SIGTERM and SIGHUP: a clean stop,
predictions.json complete."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def start_run(images: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "graphflow.cli", "run", str(REPO / "apps" / "openpose.app.json"), "--no-viewer",
         "--quiet", "--input", str(images), "--output", str(out)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until(done, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        assert process.poll() is None, f"the app ended early: {process.communicate()[1].decode()[-2000:]}"
        time.sleep(0.01)
    raise AssertionError(f"no {what} in {timeout} s")


def annotated(out: Path, names: list[str]) -> list[str]:
    """The frames the image writer has written: their skeletons left the decoder, the same
    messages the prediction writer receives."""
    return [name for name in names if (out / name).exists()]


def frames(path: Path) -> list[dict]:
    """Every line of a .jsonl file, parsed; each one must be whole JSON ending in a newline."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the last line is cut short"
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def images(shared_data) -> tuple[Path, list[str]]:
    folder = shared_data / "coco_val2017_mini" / "images"
    return folder, sorted(p.name for p in folder.glob("*.jpg"))


@pytest.mark.timeout(200)
def test_sigkill_keeps_every_finished_frame_in_predictions_jsonl(model_path, images, tmp_path):
    folder, names = images
    out = tmp_path / "out"
    stream = out / "predictions.jsonl"
    process = start_run(folder, out)
    try:
        # Killed as soon as 3 annotated images are out, independent of the predictions file (the
        # first frames' lines are a few kB: a buffered writer would not have written them yet).
        wait_until(lambda: len(annotated(out, names)) >= 3, process, "3 annotated images")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    drawn = annotated(out, names)
    kept = frames(stream)
    # Every frame drawn by then was also recorded, but for at most the one in flight; frames
    # finish in file order, so what is on disk is the first frames of the folder, each once.
    assert len(kept) >= len(drawn) - 1 >= 2 and len(kept) < len(names)
    assert [line["file_name"] for line in kept] == names[:len(kept)]
    assert [line["frame"] for line in kept] == list(range(len(kept)))
    assert all(isinstance(line["results"], list) for line in kept)
    assert not (tmp_path / "out" / "predictions.json").exists()  # only a clean stop writes it


@pytest.mark.timeout(200)
# SIGHUP: the terminal closed or the ssh session dropped; it killed the app at once, leaving no
# predictions.json and an annotated video without its index.
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_leave_predictions_json_complete(model_path, images, tmp_path, stop):
    folder, names = images
    out = tmp_path / "out"
    process = start_run(folder, out)
    try:
        wait_until(lambda: len(annotated(out, names)) >= 2, process, "2 annotated images")
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr.decode()[-2000:]
    kept = frames(out / "predictions.jsonl")
    assert 2 <= len(kept) <= len(names) and [line["file_name"] for line in kept] == names[:len(kept)]
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions == [entry for line in kept for entry in line["results"]]
    assert [p.name for p in out.iterdir() if p.suffix == ".tmp"] == []  # no half-written file left


@pytest.mark.timeout(200)
def test_ctrl_c_three_times_still_leaves_predictions_json_complete(model_path, images, tmp_path):
    """The first Ctrl-C drains, the second stops at once; a third, while the workers ended their
    ticks, escaped as a traceback and skipped the writers' stop(): no predictions.json."""
    folder, names = images
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "graphflow.cli", "run", str(REPO / "apps" / "openpose.app.json"), "--no-viewer",
         "--quiet", "--input", str(folder), "--output", str(out), "--set", "feeder/image_loader/loop=true"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(annotated(out, names)) >= 2, process, "2 annotated images")
        for _ in range(3):
            process.send_signal(signal.SIGINT)
            time.sleep(0.01)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "Traceback" not in stderr.decode(), stderr.decode()[-3000:]
    kept = frames(out / "predictions.jsonl")
    assert json.loads((out / "predictions.json").read_text()) == [entry for line in kept for entry in line["results"]]
