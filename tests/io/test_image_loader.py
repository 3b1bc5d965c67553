"""io.ImageLoader: files, folders, globs, videos, loop, bad files, missing paths."""
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from graphflow.testing import Harness
from graphflow.packs.io.image_loader import ImageLoader
from tests.conftest import DATA

IMAGES = DATA / "images"
pytestmark = pytest.mark.skipif(not IMAGES.is_dir(), reason="shared test images not present")


def run_loader(config, ticks):
    h = Harness(ImageLoader, config).start()
    seen = []
    for _ in range(ticks):
        if h.component.exhausted:
            break
        h.tick()
    seen = [m.payload for m in h.outputs("color")]
    h.stop()
    return h, seen


def test_single_image_is_published_once_then_exhausted():
    h, images = run_loader({"path": str(IMAGES / "bus.jpg")}, ticks=5)
    assert len(images) == 1 and h.component.exhausted
    image = images[0]
    assert image.pixels.shape == (1080, 810, 3) and image.pixels.dtype == np.uint8
    assert image.color_order == "bgr" and image.source == str(IMAGES / "bus.jpg") and image.frame == 0
    assert np.array_equal(image.pixels, cv2.imread(str(IMAGES / "bus.jpg")))


def test_folder_is_read_in_sorted_order_and_skips_other_files(tmp_path):
    for name in ("zidane.jpg", "astronaut.png", "bus.jpg"):
        shutil.copy(IMAGES / name, tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    h, images = run_loader({"path": str(tmp_path)}, ticks=10)
    assert [Path(i.source).name for i in images] == ["astronaut.png", "bus.jpg", "zidane.jpg"]
    assert [i.frame for i in images] == [0, 1, 2]
    assert h.component.exhausted


def test_glob_matches_sorted_files():
    _, images = run_loader({"path": str(IMAGES / "*.jpg")}, ticks=10)
    assert [Path(i.source).name for i in images] == ["bus.jpg", "zidane.jpg"]


def test_loop_starts_again_and_is_never_exhausted():
    h, images = run_loader({"path": str(IMAGES / "*.jpg"), "loop": True}, ticks=5)
    assert [Path(i.source).name for i in images] == ["bus.jpg", "zidane.jpg"] * 2 + ["bus.jpg"]
    assert not h.component.exhausted


def test_corrupt_file_stops_with_an_error_naming_it(tmp_path):
    shutil.copy(IMAGES / "bus.jpg", tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 this is not a jpeg" * 10)
    h = Harness(ImageLoader, {"path": str(tmp_path)}).start()
    h.tick()
    with pytest.raises(ValueError, match=r"b\.jpg.*cannot be read as an image"):
        h.tick()


def test_corrupt_file_is_skipped_with_one_warning_when_asked(tmp_path, caplog):
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    shutil.copy(IMAGES / "bus.jpg", tmp_path / "b.jpg")
    with caplog.at_level(logging.WARNING):
        h, images = run_loader({"path": str(tmp_path), "skip_bad_files": True}, ticks=5)
    assert [Path(i.source).name for i in images] == ["b.jpg"]
    assert [r for r in caplog.records if "a.jpg" in r.getMessage() and "skipped" in r.getMessage()]
    assert h.component.exhausted


def test_path_that_matches_nothing_fails_in_start(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        Harness(ImageLoader, {"path": str(tmp_path / "nothing_here.jpg")}).start()
    with pytest.raises(FileNotFoundError, match=r"matches no image"):
        Harness(ImageLoader, {"path": str(tmp_path / "*.png")}).start()
    with pytest.raises(FileNotFoundError, match=r"holds no image"):
        Harness(ImageLoader, {"path": str(tmp_path)}).start()


def test_video_frames_are_published_with_frame_indices(tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for k in range(5):
        frame = np.full((48, 64, 3), 40 * k, np.uint8)
        writer.write(frame)
    writer.release()
    h, images = run_loader({"path": str(video), "tick_period": "0"}, ticks=10)
    assert [i.frame for i in images] == [0, 1, 2, 3, 4]
    assert all(i.source == str(video) and i.pixels.shape == (48, 64, 3) for i in images)
    assert [int(round(i.pixels.mean() / 40)) for i in images] == [0, 1, 2, 3, 4]
    assert h.component.exhausted


def test_unreadable_video_names_the_file(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"no video in here")
    h = Harness(ImageLoader, {"path": str(tmp_path / "broken.mp4")}).start()
    with pytest.raises(ValueError, match="broken.mp4"):
        h.tick()


def test_a_corrupt_file_stops_an_app_with_its_name(tmp_path):
    import json

    from graphflow.app import App

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    app_file = tmp_path / "load.app.json"
    app_file.write_text(json.dumps({
        "name": "load", "modules": ["io"],
        "graph": {"nodes": [{"name": "feeder", "components": [{"name": "loader", "type": "io.ImageLoader"}]}]},
        "config": {"feeder": {"loader": {"path": str(tmp_path / "broken.png"), "tick_period": "0"}}}}))
    app = App.load(app_file, workers=1)
    app.run(duration=10)
    assert app.failure is not None and "broken.png" in str(app.failure)


def test_node_packs_keep_opencv_to_one_thread():
    # The graph's workers are the parallelism; OpenCV's own pool on top oversubscribes the cores.
    from graphflow.packs.vision.opencv import cv2

    assert cv2.getNumThreads() == 1
