"""The OpenPose app recorded over COCO val mini (real model, real images): replayed tensors give
bit-identical predictions, export --coco gives the run's predictions.json, export --images gives
the original pixels, and the Foxglove channels hold what the graphflow channels hold."""
from __future__ import annotations

import base64
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader

pytestmark = pytest.mark.slow

IMAGE = "feeder/image_loader/color"
MODEL_OUTPUT = "inference/tensor_rt_inference/output"
SKELETONS = "decoder.refine/refine_part_coordinates/skeletons_out"


def cli(repo, *args, timeout=300):
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", *map(str, args)], capture_output=True,
                            text=True, timeout=timeout, cwd=repo)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def recorded(request, tmp_path_factory):
    from tests.conftest import DATA, MODELS, REPO

    images = DATA / "coco_val2017_mini" / "images"
    if not images.exists() or not (MODELS / "openpose_mobilenet_thin.onnx").exists():
        pytest.skip("shared data or models not found")
    out = tmp_path_factory.mktemp("openpose")
    import os

    os.environ["GRAPHFLOW_MODEL_PATH"] = str(MODELS)
    result = cli(REPO, "run", REPO / "apps" / "openpose.app.json", "--no-viewer", "--quiet", "--input", images,
                 "--output", out / "live", "--record", out / "live.mcap", "--record-foxglove")
    assert "0 dropped by the recorder" in result.stderr
    return {"dir": out, "images": images, "repo": REPO, "mcap": out / "live.mcap",
            "predictions": out / "live" / "predictions.json"}


@pytest.mark.timeout(600)
def test_replayed_tensors_give_bit_identical_predictions(recorded):
    repo, out = recorded["repo"], recorded["dir"]
    result = cli(repo, "replay", recorded["mcap"], repo / "apps" / "openpose.app.json", "--no-viewer", "--quiet",
                 "--rate", "max", "--output", out / "replayed", "--map", f"{IMAGE}={IMAGE}",
                 "--map", f"{MODEL_OUTPUT}={MODEL_OUTPUT}")
    # the model did not run: the loader, the encoder and the model were replaced by the recording
    assert "in place of encoder/color_camera_encoder, feeder/image_loader, inference/tensor_rt_inference" in result.stderr
    live = recorded["predictions"].read_bytes()
    assert len(json.loads(live)) > 10
    assert (out / "replayed" / "predictions.json").read_bytes() == live


@pytest.mark.timeout(600)
def test_info_then_export_coco_equals_the_runs_predictions(recorded):
    repo, out = recorded["repo"], recorded["dir"]
    info = json.loads(cli(repo, "info", recorded["mcap"], "--json").stdout)
    channels = {c["channel"]: c for c in info["channels"]}
    assert channels[IMAGE]["messages"] == 16 and channels[IMAGE]["type"] == "vision/Image"
    assert channels[SKELETONS]["messages"] == 16 and channels[SKELETONS]["type"] == "vision/Skeleton2List"
    assert info["app"] == "openpose" and info["recovered"] is None
    said = cli(repo, "export", recorded["mcap"], "--coco", out / "export" / "coco.json")
    results = len(json.loads(recorded["predictions"].read_bytes()))
    assert said.stdout.strip() == f"wrote {results} COCO results to {out / 'export' / 'coco.json'}"
    assert "prediction_writer" not in said.stderr  # one line says what was written, not the writer's too
    assert sorted(p.name for p in (out / "export").iterdir()) == ["coco.json"]  # no .jsonl stream beside it
    exported = (out / "export" / "coco.json").read_bytes()
    assert json.loads(exported) == json.loads(recorded["predictions"].read_bytes())
    assert exported == recorded["predictions"].read_bytes()


@pytest.mark.timeout(600)
def test_export_images_gives_the_original_pixels_and_video_the_frames(recorded):
    repo, out = recorded["repo"], recorded["dir"]
    cli(repo, "export", recorded["mcap"], "--images", out / "png", "--channel", IMAGE)
    originals = sorted(recorded["images"].iterdir())
    exported = sorted((out / "png").glob("*.png"))
    assert len(exported) == len(originals) == 16
    for original, png in zip(originals, exported):
        assert np.array_equal(cv2.imread(str(png)), cv2.imread(str(original))), png
    said = cli(repo, "export", recorded["mcap"], "--video", out / "video.mp4", "--channel", IMAGE)
    assert said.stdout.strip() == f"wrote 16 frames of {IMAGE} to {out / 'video.mp4'}"
    # the val images differ in size: each is fitted into the first's frame, its aspect ratio kept
    # (before, stretched to it without a word)
    assert said.stderr.startswith(f"warning: {IMAGE}: frames of another size than the first")
    video = cv2.VideoCapture(str(out / "video.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 16
    first = cv2.imread(str(originals[0]))
    first = first[:first.shape[0] // 2 * 2, :first.shape[1] // 2 * 2]  # a video's sides are even
    frames = [video.read()[1] for _ in range(16)]
    for original, frame in zip(originals, frames):
        image = cv2.imread(str(original))
        assert frame.shape == first.shape
        scale = min(first.shape[1] / image.shape[1], first.shape[0] / image.shape[0])
        h, w = round(image.shape[0] * scale), round(image.shape[1] * scale)
        top, left = (first.shape[0] - h) // 2, (first.shape[1] - w) // 2
        inside = frame[top + 2:top + h - 2, left + 2:left + w - 2].astype(float)
        expected = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)[2:-2, 2:-2].astype(float)
        assert np.abs(inside - expected).mean() < 8, original  # (mp4v is lossy)
        if h < first.shape[0] - 8:  # black bars above and below
            assert frame[:top - 2].mean() < 8 and frame[top + h + 2:].mean() < 8, original


@pytest.mark.timeout(600)
def test_export_without_a_channel_says_which_it_took_and_which_others_there_are(recorded):
    repo, out = recorded["repo"], recorded["dir"]
    said = cli(repo, "export", recorded["mcap"], "--images", out / "default")
    assert said.stdout.strip() == (f"wrote 16 images of {IMAGE} to {out / 'default'} (other image channels: "
                                   f"viz/visualizer/annotated; choose with --channel)")
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", "export", str(recorded["mcap"]), "--images",
                             str(out / "none"), "--channel", SKELETONS], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.strip() == (
        f"error: --channel '{SKELETONS}': not an image channel (image channels: {IMAGE}, viz/visualizer/annotated)")


@pytest.mark.timeout(600)
def test_foxglove_channels_hold_the_images_and_skeletons(recorded):
    from graphflow.recording.writer import record_frames
    from graphflow.wire import decode_fields

    reader = make_reader(open(recorded["mcap"], "rb"))
    summary = reader.get_summary()
    topics = {c.topic: c for c in summary.channels.values()}
    image_channel, annotation_channel = topics["/foxglove/" + IMAGE], topics["/foxglove/" + SKELETONS]
    assert summary.schemas[image_channel.schema_id].name == "foxglove.CompressedImage"
    assert summary.schemas[annotation_channel.schema_id].name == "foxglove.ImageAnnotations"
    assert image_channel.message_encoding == annotation_channel.message_encoding == "json"
    assert all(summary.schemas[c.schema_id].encoding == "jsonschema" for c in (image_channel, annotation_channel))
    originals = {}
    skeletons = {}
    for _, channel, message in reader.iter_messages(topics=[IMAGE, SKELETONS]):
        _, header, fields = decode_fields(record_frames(message.data))
        (originals if channel.topic == IMAGE else skeletons)[message.log_time] = fields
    images = annotations = 0
    for _, channel, message in reader.iter_messages(topics=["/foxglove/" + IMAGE, "/foxglove/" + SKELETONS]):
        body = json.loads(message.data)
        stamp = body["timestamp"] if "timestamp" in body else (body["points"][0]["timestamp"] if body["points"] else None)
        if channel.topic.endswith(IMAGE):
            assert body["format"] == "jpeg" and body["frame_id"] == IMAGE
            assert body["timestamp"]["sec"] * 10**9 + body["timestamp"]["nsec"] == message.log_time
            pixels = cv2.imdecode(np.frombuffer(base64.b64decode(body["data"]), np.uint8), cv2.IMREAD_COLOR)
            original = originals[message.log_time]["pixels"]
            assert pixels.shape == original.shape
            assert cv2.PSNR(pixels, np.ascontiguousarray(original)) > 30  # JPEG quality 90: the same picture
            images += 1
        else:
            joints = skeletons[message.log_time]["joints"]
            found = joints[..., 2] > 0
            points = [a for a in body["points"] if a["type"] == 1]
            if found.any():
                xy = np.array([[p["x"], p["y"]] for p in points[0]["points"]])
                assert np.allclose(xy, joints[found][:, :2], atol=1e-4)
            else:
                assert not points
            annotations += 1
        assert stamp is None or stamp["sec"] * 10**9 + stamp["nsec"] == message.log_time
    assert images == annotations == 16


def _refused(*args) -> str:
    result = subprocess.run([sys.executable, "-m", "graphflow.cli", *map(str, args)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.timeout(600)
def test_exports_and_replays_refuse_outputs_that_cannot_be_written_or_would_destroy_the_recording(recorded,
                                                                                                 tmp_path):
    mcap, size = recorded["mcap"], recorded["mcap"].stat().st_size
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    assert _refused("export", mcap, "--coco", mcap) == \
        f"error: {mcap} is the recording being read: write the export to another file"
    assert _refused("export", mcap, "--video", mcap).endswith("is the recording being read: write the export to "
                                                              "another file")
    assert _refused("replay", mcap, recorded["repo"] / "apps" / "openpose.app.json", "--no-viewer", "--record",
                    mcap) == f"error: --record {mcap} is the recording being replayed: record to another file"
    assert mcap.stat().st_size == size  # untouched
    assert _refused("export", mcap, "--coco", tmp_path) == f"error: {tmp_path} is a folder: give the COCO results file's name"
    assert _refused("export", mcap, "--video", tmp_path) == f"error: {tmp_path} is a folder: give the video file's name"
    assert _refused("export", mcap, "--images", a_file) == f"error: {a_file} is a file: --images takes a folder"
    assert _refused("export", mcap, "--images", a_file / "sub") == f"error: cannot write {a_file / 'sub'}: Not a directory"
    assert _refused("export", mcap, "--coco", a_file / "x.json").startswith(f"error: cannot write {a_file}")
    assert _refused("export", mcap, "--video", a_file / "x.mp4").startswith(f"error: cannot write {a_file}")
    assert _refused("export", mcap, "--coco", tmp_path / "c.json", "--coco-writer", "viz/visualizer") == (
        "error: --coco-writer 'viz/visualizer': a viz.Visualizer writes no results file (a writer has the params "
        "folder and filename)")
    assert a_file.read_text() == "mine"


@pytest.mark.timeout(600)
def test_export_video_takes_a_frame_rate_that_is_not_round(recorded, tmp_path):
    """A rate from recorded times is rarely round (an unthrottled source: 84.219 frames/s); MPEG-4
    refused one whose time base did not fit 16 bits ('timebase 1000/84219 not supported')."""
    cli(recorded["repo"], "export", recorded["mcap"], "--video", tmp_path / "v.mp4", "--channel", IMAGE,
        "--fps", "84.219")
    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 16
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(84.22, abs=0.01)
    capture.release()


@pytest.mark.timeout(600)
def test_replay_refuses_an_input_the_recording_replaces_and_a_start_after_its_end(recorded):
    """Both ran and produced nothing, exit 0: --input was set on the loader the recording replaced,
    and --start past the end gave 0 frames."""
    app = recorded["repo"] / "apps" / "openpose.app.json"
    assert _refused("replay", recorded["mcap"], app, "--no-viewer", "--input", recorded["images"]) == (
        "error: --input sets feeder/image_loader/path, but the recording replaces feeder/image_loader: leave "
        "--input out")
    assert _refused("replay", recorded["mcap"], app, "--no-viewer", "--start", "100000").startswith(
        "error: --start 100000 is after the recording's end (")
