"""The flagship app end to end through the command line, on the real model and real images."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from graphflow.cli import main

pytestmark = pytest.mark.slow


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "graphflow.cli", *args], capture_output=True, text=True,
                          timeout=300)


def run_without_the_model(app, shared_data, tmp_path):
    """``graphflow run APP`` on bus.jpg with a model path that holds no model."""
    import os
    env = {**os.environ, "GRAPHFLOW_MODEL_PATH": str(tmp_path / "empty"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(app), "--no-viewer",
                           "--input", str(shared_data / "images" / "bus.jpg"), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)


def test_a_missing_model_is_one_error_naming_where_it_looked_with_no_report(repo, shared_data, tmp_path):
    """A user's mistake: no traceback, no empty job report of an app that never started."""
    result = run_without_the_model(repo / "apps" / "openpose.app.json", shared_data, tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "job report" not in result.stdout
    assert result.stderr.startswith("error: inference/tensor_rt_inference: model 'openpose_mobilenet_thin.onnx' "
                                    "not found. Looked in:")
    assert str(tmp_path / "empty") in result.stderr and "GRAPHFLOW_MODEL_PATH" in result.stderr


def test_a_missing_model_in_a_split_app_stops_it_with_one_error_and_no_report(repo, shared_data, tmp_path):
    """The same mistake in the app split into processes: the process that failed in start() is named
    once, the other stops with it, and no job report of zeros follows."""
    result = run_without_the_model(repo / "apps" / "openpose_split.app.json", shared_data, tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "job report" not in result.stdout
    assert "[inference] error: inference/tensor_rt_inference: model 'openpose_mobilenet_thin.onnx' not found" \
        in result.stderr
    assert result.stderr.count("error: process 'inference'") == 1, result.stderr
    assert " INFO graphflow.channels" not in result.stderr  # connection details are behind -v


def test_bus_image_gives_three_people_drawn_and_written(repo, shared_data, model_path, tmp_path):
    bus = shared_data / "images" / "bus.jpg"
    result = run_cli("run", str(repo / "apps" / "openpose.app.json"), "--no-viewer",
                     "--input", str(bus), "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "job report" in result.stdout
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert len(predictions) >= 3
    height, width = cv2.imread(str(bus)).shape[:2]
    for person in predictions:
        assert person["file_name"] == "bus.jpg" and person["category_id"] == 1 and 0 < person["score"]
        keypoints = np.array(person["keypoints"]).reshape(17, 3)
        found = keypoints[:, 2] > 0
        assert found.sum() >= 4
        assert (keypoints[found, 0] >= 0).all() and (keypoints[found, 0] < width).all()
        assert (keypoints[found, 1] >= 0).all() and (keypoints[found, 1] < height).all()
        x, y, w, h = person["bbox"]
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height
    # Three upright people side by side: their necks are far apart, heads above hips.
    necks = sorted(np.array(p["keypoints"]).reshape(17, 3)[[5, 6], 0].mean() for p in predictions[:3])
    assert min(np.diff(necks)) > 100
    annotated = cv2.imread(str(tmp_path / "bus.jpg"))
    original = cv2.imread(str(bus))
    assert annotated.shape == original.shape
    changed = np.abs(annotated.astype(int) - original.astype(int)).sum(2) > 60
    assert 0.002 < changed.mean() < 0.1  # limbs drawn, the photo otherwise untouched


def _people(folder):
    """name → the people found in it, each as its 17 COCO keypoints (x, y, found)."""
    people = {}
    for person in json.loads((folder / "predictions.json").read_text()):
        people.setdefault(person["file_name"], []).append(np.array(person["keypoints"]).reshape(17, 3))
    return people


def _distance(one, other):
    """Mean distance in pixels between the joints two people both have."""
    both = (one[:, 2] > 0) & (other[:, 2] > 0)
    return np.hypot(*(one[both, :2] - other[both, :2]).T).mean() if both.sum() >= 4 else np.inf


def test_an_underexposed_image_gives_the_people_of_the_well_exposed_one(repo, shared_data, model_path, tmp_path):
    """bus.jpg at 7% of its brightness (values 0..17), as an underexposed camera gives it: the app's
    encoder stretches its contrast and finds the three people of the original where they are; with
    auto_contrast off the model loses the third (cut off at the right edge)."""
    images = tmp_path / "in"
    images.mkdir()
    bus = cv2.imread(str(shared_data / "images" / "bus.jpg"))
    cv2.imwrite(str(images / "bus.png"), bus)
    cv2.imwrite(str(images / "dark.png"), (bus * 0.07).astype(np.uint8))
    app = str(repo / "apps" / "openpose.app.json")
    for name, options in (("on", ()), ("off", ("--set", "encoder/color_camera_encoder/auto_contrast=false"))):
        result = run_cli("run", app, "--no-viewer", "--quiet", "--input", str(images),
                         "--output", str(tmp_path / name), *options)
        assert result.returncode == 0, result.stderr
    found = _people(tmp_path / "on")
    assert len(found["bus.png"]) == len(found["dark.png"]) == 3
    for person in found["bus.png"]:  # each is there, its joints within a few pixels
        assert min(_distance(person, other) for other in found["dark.png"]) < 5
    assert len(_people(tmp_path / "off")["dark.png"]) == 2


def test_folder_input_writes_one_image_per_input(repo, shared_data, model_path, tmp_path):
    images = shared_data / "images"
    code = main(["run", str(repo / "apps" / "openpose.app.json"), "--no-viewer", "--quiet",
                 "--input", str(images), "--output", str(tmp_path)])
    assert code == 0
    names = sorted(p.name for p in images.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix not in (".json", ".jsonl")) == \
        sorted(str(n).rsplit(".", 1)[0] + ".jpg" for n in names)
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert {p["file_name"] for p in predictions} == set(names)


@pytest.mark.timeout(300)
def test_more_images_skipped_in_a_row_than_the_visualizer_queues_do_not_hang_the_app(repo, shared_data, model_path,
                                                                                     tmp_path):
    """20 strips 300×10 (a tensor 368 rows high would be 11,040 wide: the encoder skips them) before
    bus.jpg: the visualizer's image queue (16, block) filled with images no skeleton would match,
    and the app hung. Now it goes on, and bus.jpg gets its three people."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(20):
        cv2.imwrite(str(inputs / f"a{i:02d}.png"), np.full((10, 300, 3), 100, np.uint8))
    (inputs / "z.jpg").write_bytes((shared_data / "images" / "bus.jpg").read_bytes())
    result = run_cli("run", str(repo / "apps" / "openpose.app.json"), "--no-viewer", "--quiet",
                     "--input", str(inputs), "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("would need a 11040×368 tensor") == 20
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert {p["file_name"] for p in predictions} == {"z.jpg"} and len(predictions) == 3
    assert (tmp_path / "out" / "z.jpg").exists()


def test_video_input_writes_an_annotated_video(repo, shared_data, model_path, tmp_path):
    frame = cv2.resize(cv2.imread(str(shared_data / "images" / "zidane.jpg")), (640, 360))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 360))
    for _ in range(4):
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    result = run_cli("run", str(repo / "apps" / "openpose.app.json"), "--no-viewer", "--quiet",
                     "--input", str(video), "--output", str(out))
    assert result.returncode == 0, result.stderr
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()
    predictions = json.loads((out / "predictions.json").read_text())
    assert sorted({p["frame"] for p in predictions}) == [0, 1, 2, 3]


def test_unreadable_input_is_a_clear_error(repo, model_path, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    result = run_cli("run", str(repo / "apps" / "openpose.app.json"), "--no-viewer", "--quiet",
                     "--input", str(broken), "--output", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "broken.jpg" in result.stderr and "feeder/image_loader" in result.stderr
    missing = run_cli("run", str(repo / "apps" / "openpose.app.json"), "--no-viewer", "--quiet",
                      "--input", str(tmp_path / "nothing_here"), "--output", str(tmp_path / "out2"))
    assert missing.returncode == 1 and "nothing_here" in missing.stderr


def test_missing_model_says_where_it_looked(repo, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODEL_PATH", str(tmp_path / "no_models"))
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(repo / "apps" / "openpose.app.json"),
                             "--no-viewer", "--quiet", "--input", str(shared_data / "images" / "bus.jpg"),
                             "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 1
    assert "openpose_mobilenet_thin.onnx" in result.stderr and str(tmp_path / "no_models") in result.stderr
    assert "GRAPHFLOW_MODEL_PATH" in result.stderr


def test_eval_on_coco_val_mini_reaches_the_target_ap(repo, shared_data, model_path, tmp_path):
    coco = shared_data / "coco_val2017_mini"
    out = tmp_path / "eval.json"
    result = run_cli("eval", str(repo / "apps" / "openpose.app.json"),
                     "--annotations", str(coco / "person_keypoints_val2017_mini.json"),
                     "--images", str(coco / "images"), "--json", str(out))
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert set(scores) == {"AP", "AP50", "AP75", "AR"}
    assert scores["AP"] >= 0.43, scores


def test_bench_reports_throughput_and_per_node_latency(repo, shared_data, model_path, tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", str(repo / "apps" / "openpose.app.json"), "--frames", "4",
                     "--input", str(shared_data / "images" / "astronaut.png"), "--set", "feeder/image_loader/loop=true",
                     "--output", str(tmp_path / "o"), "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["frames"] == 4 and figures["frames_per_s"] > 0
    assert figures["nodes"]["inference/tensor_rt_inference"]["ticks"] == 4
    assert "frames/s" in result.stdout


def test_bench_counts_the_frames_a_source_really_produced(repo, shared_data, model_path, tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", str(repo / "apps" / "openpose.app.json"), "--frames", "5",
                     "--input", str(shared_data / "images" / "astronaut.png"),
                     "--output", str(tmp_path / "o"), "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["frames"] == 1  # one image, no loop: 1 frame, not 5


def test_bench_without_output_writes_nothing_into_the_apps_output_folder(repo, shared_data, model_path, tmp_path):
    """The app's io.output default (out/openpose, relative to the current folder) held a run's
    predictions.json, which a bench replaced."""
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", "bench", str(repo / "apps" / "openpose.app.json"),
                             "--frames", "1", "--input", str(shared_data / "images" / "astronaut.png")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 frames" in result.stdout and list(tmp_path.iterdir()) == []
