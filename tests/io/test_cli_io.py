"""Input and output through the command line, as a user runs it: bad input files in a folder
(--on-bad-input), a closed stdout pipe (`graphflow ... | head`), and `graphflow eval`'s
temporary folder."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OPENPOSE = REPO / "apps" / "openpose.app.json"


def graphflow(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "graphflow.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, **kwargs)


@pytest.fixture
def coco_folder(shared_data, tmp_path):
    """Three COCO val images, a cut-short copy of one between them, and a file that is no image."""
    coco = shared_data / "coco_val2017_mini"
    annotations = json.loads((coco / "person_keypoints_val2017_mini.json").read_text())
    with_people = {a["image_id"] for a in annotations["annotations"] if a["num_keypoints"] >= 10}
    images = sorted(coco / "images" / i["file_name"] for i in annotations["images"] if i["id"] in with_people)[:3]
    folder = tmp_path / "images"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)
    data = images[0].read_bytes()
    (folder / (images[0].stem + "_cut.jpg")).write_bytes(data[:len(data) * 2 // 3])
    (folder / "zz_notes.jpg").write_text("not an image")
    return folder, [image.name for image in images]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bad_files_in_a_folder_are_skipped_named_and_counted(model_path, coco_folder, tmp_path):
    folder, good = coco_folder
    result = graphflow("run", str(OPENPOSE), "--no-viewer", "--quiet", "--input", str(folder),
                       "--output", str(tmp_path / "out"), timeout=200)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    cut = good[0].replace(".jpg", "_cut.jpg")
    assert f"{cut}' is cut short" in result.stderr and "zz_notes.jpg' cannot be decoded" in result.stderr
    assert f"2 bad input files skipped: {cut}, zz_notes.jpg" in result.stderr
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [line["file_name"] for line in lines] == good  # every good image, none of the bad ones
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert predictions and predictions == [entry for line in lines for entry in line["results"]]


@pytest.mark.timeout(60)
def test_an_output_folder_that_is_the_inputs_or_an_empty_path_is_refused_before_running(tmp_path):
    """Outputs are named like their inputs: --output on the input's folder would replace the
    user's images (it did, even read-only ones), and '' would mean the current folder."""
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "bus.jpg").write_bytes(b"the user's image")
    (folder / "x.png").write_bytes(b"another image of the user's")
    for given, refused in (([str(folder), str(folder)], f"--output: {folder} is the folder of the input"),
                           ([str(folder / "bus.jpg"), f"{folder}/"], f"--output: {folder}/ is the folder of the input"),
                           ([str(folder / "bus.jpg"), str(folder / ".." / "images")], "is the folder of the input"),
                           # a glob's files lie in the folder: x.png's output x.jpg replaced the input x.jpg
                           ([str(folder / "*.png"), str(folder)], f"--output: {folder} is the folder of the input"),
                           ([str(tmp_path / "*" / "*.png"), str(folder)], "is the folder of the input"),
                           (["", str(tmp_path / "out")], "--input: is empty: give a path"),
                           ([str(folder), " "], "--output: is empty: give a path")):
        result = graphflow("run", str(OPENPOSE), "--no-viewer", "--input", given[0], "--output", given[1], timeout=50)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (given, result.stderr)
        assert refused in result.stderr.splitlines()[0] and "nothing was run" in result.stderr, (given, result.stderr)
    assert sorted(p.name for p in folder.iterdir()) == ["bus.jpg", "x.png"]
    assert (folder / "bus.jpg").read_bytes() == b"the user's image"
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(60)
def test_a_tilde_of_an_unknown_user_is_a_path_that_does_not_exist_not_a_traceback(tmp_path):
    result = graphflow("run", str(OPENPOSE), "--no-viewer", "--quiet", "--input", "~nouser_graphflow/x.jpg",
                       "--output", str(tmp_path / "out"), timeout=50)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("error: feeder/image_loader: path '~nouser_graphflow/x.jpg' does "
                                                      "not exist (expected an image or video file, a folder, a glob "
                                                      "like 'images/*.jpg', or 'camera:0')")


@pytest.mark.timeout(60)
def test_a_tilde_after_an_equals_sign_is_the_home_folder_for_the_output_too(tmp_path, monkeypatch):
    """The shell expands '~' in '--output ~/out' but not in '--output=~/out': the output went to a
    folder named '~' in the current one while the input's '~' was expanded."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "bus.jpg").write_bytes(b"not really an image")
    copy = {"name": "copy", "modules": ["io", "viz"], "graph": {
        "nodes": [{"name": "feeder", "components": [{"name": "loader", "type": "io.ImageLoader"}]},
                  {"name": "out", "components": [{"name": "writer", "type": "viz.ImageWriter"}]}],
        "edges": [{"source": "feeder/loader/color", "target": "out/writer/image"}]},
        "io": {"input": "feeder/loader/path", "output": "out/writer/folder"}}
    (tmp_path / "copy.app.json").write_text(json.dumps(copy))
    result = graphflow("run", str(tmp_path / "copy.app.json"), "--no-viewer", "--quiet", "--input=~/bus.jpg",
                       "--output=~/out", timeout=50)
    assert "Traceback" not in result.stderr and "bus.jpg" in result.stderr  # (not an image: read, and refused)
    assert (tmp_path / "home" / "out").is_dir() and not (REPO / "~").exists()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_on_bad_input_stop_fails_the_run_naming_the_file(model_path, coco_folder, tmp_path):
    folder, good = coco_folder
    result = graphflow("run", str(OPENPOSE), "--no-viewer", "--quiet", "--input", str(folder),
                       "--output", str(tmp_path / "out"), "--on-bad-input", "stop", timeout=200)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert good[0].replace(".jpg", "_cut.jpg") in result.stderr and "on_bad_input is 'stop'" in result.stderr


@pytest.mark.timeout(60)
def test_on_bad_input_needs_a_component_that_takes_it(tmp_path):
    result = graphflow("run", "apps/demo.app.json", "--no-viewer", "--on-bad-input", "stop", "--max-ticks", "1",
                       timeout=50)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--on-bad-input" in result.stderr and "no component" in result.stderr
    result = graphflow("run", "apps/demo.app.json", "--on-bad-input", "maybe", timeout=50)
    assert result.returncode == 2 and "invalid choice: 'maybe'" in result.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [["validate", "apps/demo.app.json"], ["nodes"], ["graph", "apps/demo.app.json"]])
def test_a_closed_stdout_pipe_ends_quietly(command):
    # As `graphflow ... | head` once head has read enough: the reading end is closed before
    # graphflow writes, so its first write meets EPIPE.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "graphflow.cli", *command], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=50,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        os.close(write_end)
    assert result.stderr == "" and result.returncode == 141


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_eval_leaves_no_temporary_folder(model_path, shared_data, tmp_path):
    coco = shared_data / "coco_val2017_mini"
    annotations = json.loads((coco / "person_keypoints_val2017_mini.json").read_text())
    annotations["images"] = annotations["images"][:2]
    kept = {image["id"] for image in annotations["images"]}
    annotations["annotations"] = [a for a in annotations["annotations"] if a["image_id"] in kept]
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    images = tmp_path / "images"
    images.mkdir()
    for image in annotations["images"]:
        shutil.copy(coco / "images" / image["file_name"], images)
    temp = tmp_path / "temp"
    temp.mkdir()
    result = graphflow("eval", str(OPENPOSE), "--annotations", str(tmp_path / "ann.json"), "--images", str(images),
                       env={"TMPDIR": str(temp)}, timeout=280)
    assert result.returncode == 0, result.stderr
    assert "AP " in result.stdout and "Average Precision  (AP) @[ IoU=0.50:0.95" in result.stdout  # COCO's table
    assert "creating index" not in result.stdout and "DONE (t=" not in result.stdout  # not pycocotools' steps
    # onnxruntime keeps one session-id file (.ses) in the temp folder, reused by every run.
    assert [p.name for p in temp.iterdir() if p.name != ".ses"] == []


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_10_fps_video_gives_a_10_fps_video_with_every_frame(model_path, shared_data, tmp_path):
    import cv2
    import numpy as np

    bus = cv2.resize(cv2.imread(str(shared_data / "images" / "bus.jpg")), (240, 320))
    clip = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (240, 320))
    for k in range(6):
        writer.write(np.roll(bus, 8 * k, axis=1))
    writer.release()
    result = graphflow("run", str(OPENPOSE), "--no-viewer", "--quiet", "--input", str(clip),
                       "--output", str(tmp_path / "out"), timeout=200)
    assert result.returncode == 0, result.stderr
    capture = cv2.VideoCapture(str(tmp_path / "out" / "walk.mp4"))
    fps, frames = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    assert fps == pytest.approx(10.0) and frames == 6  # 0.6 s, as long as the input


def _run_on_a_terminal(args, timeout=200):
    """``graphflow ARGS`` with stderr on a pseudo-terminal (as in a user's shell); stdout piped.
    Returns (exit code, stdout, what the terminal received)."""
    import pty
    import select

    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "graphflow.cli", *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=slave, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    os.close(slave)
    terminal = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                raise AssertionError("no output and no exit")
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end closed: the process exited
                break
            if not data:
                break
            terminal += data
        out = process.stdout.read().decode()
        return process.wait(timeout), out, terminal.decode(errors="replace")
    finally:
        os.close(master)
        process.kill()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_folder_shows_a_progress_line_on_a_terminal_cleared_before_logs_and_the_summary(model_path, shared_data,
                                                                                           tmp_path):
    import re

    images = shared_data / "coco_val2017_mini" / "images"
    count = len(list(images.glob("*.jpg")))
    args = ["run", str(OPENPOSE), "--no-viewer", "--input", str(images), "--output", str(tmp_path / "out")]
    code, out, terminal = _run_on_a_terminal(args)
    assert code == 0 and out.startswith("job report"), terminal
    drawn = re.findall(rf"\r\x1b\[Kfeeder/image_loader: (\S+\.jpg) (\d+)/{count} \((\d+)%\) [\d.]+/s", terminal)
    assert drawn, terminal  # 16 images take seconds: drawn at least once, every 0.5 s
    for name, done, percent in drawn:
        assert (images / name).exists() and 1 <= int(done) <= count and int(percent) == 100 * int(done) // count
    logged = list(re.finditer(r"(INFO|WARNING) ", terminal))
    assert logged  # the prediction writer's summary at least
    for record in logged:  # a log line starts on a clean line: after a newline, or the line cleared
        before = terminal[:record.start()]
        assert not before or before.endswith(("\n", "\x1b[K")), repr(terminal[record.start() - 80:record.end()])
    assert terminal.rstrip("\r\n").endswith("\r\x1b[K") or "image_loader: " not in terminal.rsplit("\n", 1)[-1]
    piped = graphflow(*args, timeout=200, env={"GRAPHFLOW_MODEL_PATH": str(model_path)})
    assert piped.returncode == 0 and "image_loader: " not in piped.stderr  # not on a pipe or a log


@pytest.mark.timeout(120)
def test_opencv_own_warnings_show_only_with_verbose(model_path, tmp_path):
    """A camera that is not there: OpenCV warns twice in its own words ('[ WARN:0@0.01] global
    cap_v4l.cpp ...'), naming no input, before graphflow's line; they are details for -v."""
    args = ["run", str(OPENPOSE), "--no-viewer", "--input", "camera:99", "--output", str(tmp_path / "out")]
    plain = graphflow(*args, timeout=100)
    assert plain.returncode == 1 and plain.stderr.strip() == "error: feeder/image_loader: cannot open camera 'camera:99'"
    verbose = graphflow("-v", *args, timeout=100)
    assert verbose.returncode == 1 and "[ WARN:" in verbose.stderr  # OpenCV said it: the case is real
