"""io.ImageLoader: files, folders, globs, videos, loop, bad files, missing paths."""
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from graphflow import NodeError
from graphflow.testing import Harness
from graphflow.packs.io.image_loader import ImageLoader
from tests.conftest import DATA

IMAGES = DATA / "images"
pytestmark = pytest.mark.usefixtures("shared_data")  # skips without them; fails in CI


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
    h = Harness(ImageLoader, {"path": str(tmp_path), "on_bad_input": "stop"}).start()
    h.tick()
    with pytest.raises(NodeError, match=r"b\.jpg.*cut short.*on_bad_input is 'stop'"):
        h.tick()


def test_corrupt_file_is_skipped_with_one_warning_by_default(tmp_path, caplog):
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    shutil.copy(IMAGES / "bus.jpg", tmp_path / "b.jpg")
    with caplog.at_level(logging.WARNING):
        h, images = run_loader({"path": str(tmp_path)}, ticks=5)
    assert [Path(i.source).name for i in images] == ["b.jpg"]
    assert [r for r in caplog.records if "a.jpg" in r.getMessage() and "skipped" in r.getMessage()]
    assert h.component.exhausted and h.component.bad_inputs == 1


def test_path_that_matches_nothing_fails_in_start(tmp_path):
    with pytest.raises(NodeError, match="nothing_here"):
        Harness(ImageLoader, {"path": str(tmp_path / "nothing_here.jpg")}).start()
    with pytest.raises(NodeError, match=r"matches no image"):
        Harness(ImageLoader, {"path": str(tmp_path / "*.png")}).start()
    with pytest.raises(NodeError, match=r"holds no image"):
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


def test_a_video_cut_short_gives_its_frames_and_a_warning_saying_how_many(tmp_path, caplog):
    """An AVI cut at 60 %: its header still promises 20 frames; the frames there are published,
    and one warning says the video ended early (before: 11 of 20, exit 0, no word)."""
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(20):
        writer.write(np.random.default_rng(k).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    whole = video.read_bytes()
    with caplog.at_level(logging.WARNING):
        _, images = run_loader({"path": str(video), "tick_period": "0"}, ticks=30)
    assert len(images) == 20 and not [r for r in caplog.records if "ended after" in r.getMessage()]
    video.write_bytes(whole[:len(whole) * 6 // 10])
    with caplog.at_level(logging.WARNING):
        _, images = run_loader({"path": str(video), "tick_period": "0"}, ticks=30)
    said = [r.getMessage() for r in caplog.records if "ended after" in r.getMessage()]
    assert 0 < len(images) < 20
    assert said == [f"node/component: video {str(video)!r} ended after {len(images)} of its 20 frames "
                    f"(cut short or damaged?)"]


def test_unreadable_video_names_the_file(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"no video in here")
    h = Harness(ImageLoader, {"path": str(tmp_path / "broken.mp4")}).start()
    with pytest.raises(NodeError, match=r"no input could be read: 1 bad file \(broken.mp4\)"):
        h.tick()  # skipped, and then nothing was left: an error, not an empty run
    assert h.component.bad_inputs == 1 and not h.outputs("color")
    h = Harness(ImageLoader, {"path": str(tmp_path / "broken.mp4"), "on_bad_input": "stop"}).start()
    with pytest.raises(NodeError, match="broken.mp4"):
        h.tick()


def test_a_corrupt_file_stops_an_app_with_its_name(tmp_path):
    import json

    from graphflow.app import App

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    app_file = tmp_path / "load.app.json"
    app_file.write_text(json.dumps({
        "name": "load", "modules": ["io"],
        "graph": {"nodes": [{"name": "feeder", "components": [{"name": "loader", "type": "io.ImageLoader"}]}]},
        "config": {"feeder": {"loader": {"path": str(tmp_path / "broken.png"), "tick_period": "0",
                                         "on_bad_input": "stop"}}}}))
    app = App.load(app_file, workers=1)
    app.run(duration=10)
    assert app.failure is not None and "broken.png" in str(app.failure)


def test_node_packs_keep_opencv_to_one_thread():
    # The graph's workers are the parallelism; OpenCV's own pool on top oversubscribes the cores.
    from graphflow.packs.vision.opencv import cv2

    assert cv2.getNumThreads() == 1


# -- bad input: cut-short files, counting, the summary, loop ------------------------------------
def _cut(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[:int(len(data) * fraction)])
    return target


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.999])
def test_a_cut_short_jpeg_is_reported_not_decoded_as_grey(tmp_path, fraction, caplog):
    # OpenCV's imread decodes such a file, filling the missing rows with grey, with only a
    # libjpeg warning on stderr ("Premature end of JPEG file").
    shutil.copy(IMAGES / "zidane.jpg", tmp_path / "a.jpg")
    _cut(IMAGES / "bus.jpg", tmp_path / "b.jpg", fraction)
    shutil.copy(IMAGES / "zidane.jpg", tmp_path / "c.jpg")
    with caplog.at_level(logging.WARNING):
        h, images = run_loader({"path": str(tmp_path)}, ticks=10)
    assert [Path(i.source).name for i in images] == ["a.jpg", "c.jpg"]
    assert [i.frame for i in images] == [0, 2]  # indices in the folder, not shifted by the bad file
    assert h.component.bad_inputs == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("b.jpg" in w and "cut short" in w for w in warnings)
    assert any("1 bad input file skipped: b.jpg" in w for w in warnings)  # the summary at stop


def _zero_middle(source: Path, target: Path) -> Path:
    """The file with 20,000 bytes of its entropy-coded data zeroed a third of the way in (whole
    length and end marker kept: only the damage itself tells)."""
    data = bytearray(source.read_bytes())
    start = len(data) // 3
    data[start:start + 20_000] = bytes(20_000)
    target.write_bytes(bytes(data))
    return target


def test_a_jpeg_damaged_inside_is_reported_not_decoded_as_grey(tmp_path, caplog):
    damaged = _zero_middle(IMAGES / "bus.jpg", tmp_path / "b.jpg")
    # The premise, checked with OpenCV alone: it decodes the file, and the rows after the damage
    # come out one flat grey.
    plain = cv2.imdecode(np.frombuffer(damaged.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert plain is not None and plain.shape == (1080, 810, 3) and np.all(plain[-50:] == 128)
    shutil.copy(IMAGES / "zidane.jpg", tmp_path / "c.jpg")
    with caplog.at_level(logging.WARNING):
        h, images = run_loader({"path": str(tmp_path)}, ticks=10)
    assert [Path(i.source).name for i in images] == ["c.jpg"] and h.component.bad_inputs == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("b.jpg" in w and "is damaged (libjpeg: Corrupt JPEG data" in w for w in warnings)
    with pytest.raises(NodeError, match=r"b\.jpg.* is damaged"):
        run_loader({"path": str(damaged), "on_bad_input": "stop"}, ticks=2)


def test_a_harmless_libjpeg_warning_is_passed_on_and_the_image_kept(tmp_path, capfd):
    # A baseline JPEG whose scan header gives a successive-approximation bit (Al = 1): libjpeg
    # warns "Invalid SOS parameters for sequential JPEG" and decodes it as it is.
    data = bytearray((IMAGES / "bus.jpg").read_bytes())
    sos = data.index(b"\xff\xda")
    end = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")  # Ss, Se, Ah/Al: its last 3 bytes
    assert data[end - 3:end] == b"\x00\x3f\x00"
    data[end - 1] = 0x01
    (tmp_path / "a.jpg").write_bytes(bytes(data))
    # Stray bytes before the end-of-image marker, after the last block (as cameras' MJPEG frames
    # often end): "Corrupt JPEG data: 2 extraneous bytes before marker 0xd9", every pixel intact.
    whole = (IMAGES / "bus.jpg").read_bytes()
    (tmp_path / "b.jpg").write_bytes(whole[:-2] + b"\x12\x34\x56\x00\x00" + whole[-2:])
    capfd.readouterr()
    h, images = run_loader({"path": str(tmp_path)}, ticks=3)
    assert len(images) == 2 and h.component.bad_inputs == 0
    for image in images:
        assert np.array_equal(image.pixels, cv2.imread(str(IMAGES / "bus.jpg")))
    printed = capfd.readouterr().err
    assert "Invalid SOS parameters for sequential JPEG" in printed
    assert "extraneous bytes before marker 0xd9" in printed


def test_what_others_print_while_a_jpeg_decodes_still_reaches_stderr(capfd):
    import os

    from graphflow.packs.io.image_loader import _STDERR

    def prints():
        os.write(2, b"Corrupt JPEG data: 3 extraneous bytes before marker 0xd9\nanother thread's line\n")
        return 7

    capfd.readouterr()
    assert _STDERR.call(prints) == (7, "Corrupt JPEG data: 3 extraneous bytes before marker 0xd9\n"
                                       "another thread's line\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # fd 2 is back, and the capture file was emptied
    assert _STDERR.call(lambda: 1) == (1, "")


def test_a_cut_short_png_is_reported(tmp_path):
    _cut(IMAGES / "astronaut.png", tmp_path / "a.png", 0.98)
    shutil.copy(IMAGES / "astronaut.png", tmp_path / "b.png")
    h, images = run_loader({"path": str(tmp_path)}, ticks=10)
    assert [Path(i.source).name for i in images] == ["b.png"] and h.component.bad_inputs == 1


def test_jpeg_end_marker_check_skips_segments_that_hold_their_own_end_marker():
    from graphflow.packs.io.image_loader import jpeg_is_complete

    data = (IMAGES / "bus.jpg").read_bytes()
    assert data[-2:] == b"\xff\xd9" and jpeg_is_complete(data)
    # An application segment (as an EXIF thumbnail) holding a whole JPEG, FFD9 included.
    body = b"thumb\xff\xd8\x00\x01\xff\xd9"
    with_thumbnail = data[:2] + b"\xff\xef" + (len(body) + 2).to_bytes(2, "big") + body + data[2:]
    assert jpeg_is_complete(with_thumbnail)
    assert cv2.imdecode(np.frombuffer(with_thumbnail, np.uint8), cv2.IMREAD_COLOR) is not None
    assert not jpeg_is_complete(with_thumbnail[:len(with_thumbnail) // 2])
    assert not jpeg_is_complete(data[:-1]) and not jpeg_is_complete(data[:-2])
    assert jpeg_is_complete(data + b"\x00" * 10)  # padding after the end marker is harmless
    assert not jpeg_is_complete(b"") and not jpeg_is_complete(b"\xff\xd8")


def test_every_bad_file_is_counted_and_the_summary_names_them(tmp_path, caplog):
    for k in range(3):
        (tmp_path / f"bad{k}.jpg").write_bytes(b"not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    shutil.copy(IMAGES / "bus.jpg", tmp_path / "good.jpg")
    with caplog.at_level(logging.WARNING):
        h, images = run_loader({"path": str(tmp_path)}, ticks=10)
    assert len(images) == 1 and h.component.bad_inputs == 4
    summary = [r.getMessage() for r in caplog.records if "bad input files skipped" in r.getMessage()]
    assert summary == ["node/component: 4 bad input files skipped: bad0.jpg, bad1.jpg, bad2.jpg, empty.png"]


def test_a_gif_and_a_link_to_nowhere_in_a_folder_are_not_passed_over_in_silence(tmp_path, caplog):
    """A .gif given alone was read, but left out of a folder; a broken link was left out without
    a word (given alone it is an error)."""
    pixels = np.full((8, 8, 3), 200, np.uint8)
    assert cv2.imwrite(str(tmp_path / "a.gif"), pixels)
    shutil.copy(IMAGES / "bus.jpg", tmp_path / "b.jpg")
    (tmp_path / "c.jpg").symlink_to(tmp_path / "gone.jpg")
    with caplog.at_level(logging.WARNING):
        h, images = run_loader({"path": str(tmp_path)}, ticks=10)
    assert [Path(i.source).name for i in images] == ["a.gif", "b.jpg"]
    assert images[0].pixels.shape == (8, 8, 3) and h.component.bad_inputs == 1
    assert any("c.jpg" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)


def test_loop_does_not_retry_a_bad_file(tmp_path, caplog):
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    shutil.copy(IMAGES / "bus.jpg", tmp_path / "b.jpg")
    with caplog.at_level(logging.WARNING):
        h, images = run_loader({"path": str(tmp_path), "loop": True}, ticks=4)
    assert [Path(i.source).name for i in images] == ["b.jpg"] * 4
    assert h.component.bad_inputs == 1
    assert len([r for r in caplog.records if "a.jpg' cannot be decoded" in r.getMessage()]) == 1


@pytest.mark.parametrize("loop", [False, True])
def test_input_of_only_bad_files_is_an_error_naming_them(tmp_path, loop):
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    (tmp_path / "b.png").write_bytes(b"")
    h = Harness(ImageLoader, {"path": str(tmp_path), "loop": loop}).start()
    with pytest.raises(NodeError, match=r"no input could be read: 2 bad files \(a.jpg, b.png\)"):
        h.tick()
    assert not h.outputs("color")


def test_bad_files_after_a_good_one_end_the_input_quietly(tmp_path):
    shutil.copy(IMAGES / "bus.jpg", tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"garbage")
    h, images = run_loader({"path": str(tmp_path)}, ticks=5)
    assert len(images) == 1 and h.component.exhausted and h.component.bad_inputs == 1


def test_on_bad_input_takes_only_skip_or_stop():
    with pytest.raises(ValueError, match=r"expected one of \[.skip., .stop.\]"):
        Harness(ImageLoader, {"path": str(IMAGES / "bus.jpg"), "on_bad_input": "ignore"}).start()


def test_video_frames_carry_the_video_frame_rate(tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(3):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    _, images = run_loader({"path": str(video), "tick_period": "0"}, ticks=5)
    assert [i.fps for i in images] == [10.0] * 3
    _, images = run_loader({"path": str(IMAGES / "bus.jpg")}, ticks=2)
    assert images[0].fps == 0.0
