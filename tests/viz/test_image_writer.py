"""viz.ImageWriter: file names for stills, videos and repeats; formats; video output, its frame
rate and timestamps; backpressure."""
import threading

import cv2
import numpy as np
import pytest

from graphflow import Codelet, NodeError, Param, Period, Tx
from graphflow.scheduler import Scheduler
from graphflow.testing import Harness
from graphflow.packs.viz.image_writer import ImageWriter
from graphflow.packs.vision.messages import Image


def write(tmp_path, config, images):
    h = Harness(ImageWriter, {"folder": str(tmp_path / "out"), **config}).start()
    for k, image in enumerate(images):
        h.feed("image", image, acqtime=float(k))
        h.run_pending()
    h.stop()
    return tmp_path / "out"


def image(value, source, frame=0, order="bgr", fps=0.0):
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:] = value
    return Image(pixels=pixels, source=source, frame=frame, color_order=order, fps=fps)


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return fps, frames


def test_still_images_are_named_after_their_source(tmp_path):
    out = write(tmp_path, {"format": "png"}, [image((10, 20, 30), "/data/a.jpg"),
                                              image((40, 50, 60), "/data/b.png", frame=1),
                                              image((70, 80, 90), "/data/a.jpg", frame=0)])
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_000000.png", "b.png"]
    assert tuple(cv2.imread(str(out / "b.png"))[0, 0]) == (40, 50, 60)


def test_video_and_camera_frames_get_frame_numbers(tmp_path):
    out = write(tmp_path, {"video": "never"}, [image(0, "/videos/clip.mp4", frame=k) for k in range(3)] +
                [image(0, "camera:0", frame=12)])
    assert sorted(p.name for p in out.iterdir()) == [
        "camera_0_000012.jpg", "clip_000000.jpg", "clip_000001.jpg", "clip_000002.jpg"]


def test_rgb_images_are_written_with_the_right_colours(tmp_path):
    out = write(tmp_path, {"format": "png"}, [image((255, 0, 0), "red.png", order="rgb")])
    assert tuple(cv2.imread(str(out / "red.png"))[5, 5]) == (0, 0, 255)


def test_video_mode_writes_one_video(tmp_path):
    frames = [image((k * 50, k * 50, k * 50), "/videos/clip.mp4", frame=k) for k in range(4)]
    frames.append(Image(pixels=np.zeros((64, 96, 3), np.uint8), source="other.jpg"))  # resized to fit
    out = write(tmp_path, {"video": "always", "video_filename": "annotated.avi", "video_fps": 5.0}, frames)
    assert [p.name for p in out.iterdir()] == ["annotated.avi"]
    fps, read = read_video(out / "annotated.avi")
    assert fps == pytest.approx(5.0) and len(read) == 5 and read[0].shape == (32, 48, 3)
    assert [int(round(f.mean() / 50)) for f in read[:4]] == [0, 1, 2, 3]


class ImageBurst(Codelet):
    """Publishes `count` noise images as fast as the graph takes them, then is exhausted."""
    image = Tx(Image, "Noise images.")
    count = Param(int, 40, "How many.")
    tick_period = Param(Period, "0", "Period.")

    def start(self):
        rng = np.random.default_rng(1)
        self.pixels = rng.integers(0, 256, (160, 200, 3), np.uint8)  # slow to encode as PNG
        self.sent = 0
        self.tick_periodically(self.tick_period)

    def tick(self):
        self.image.publish(Image(pixels=self.pixels, source=f"/burst/{self.sent:03d}.png", frame=self.sent))
        self.sent += 1
        if self.sent >= self.count:
            self.report_exhausted()


@pytest.mark.timeout(60)
def test_a_fast_source_is_held_back_and_no_image_is_lost(tmp_path):
    # The source publishes far faster than PNGs of noise are written; the writer's input (as
    # declared, no edge setting) must hold the source back rather than drop: 40 images > its queue.
    burst = ImageBurst("burst", "b", {"count": 40})
    writer = ImageWriter("writer", "w", {"folder": str(tmp_path), "format": "png", "video": "never"})
    assert writer.inputs["image"].decl.queue_size < 40
    burst.outputs["image"].connect(writer.inputs["image"])
    scheduler = Scheduler([burst, writer], workers=2)
    runner = threading.Thread(target=scheduler.run, kwargs={"duration": 50}, daemon=True)
    runner.start()
    runner.join(55)
    assert not runner.is_alive() and scheduler.failure is None
    assert writer.inputs["image"].dropped == 0 and writer.written == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{k:03d}.png" for k in range(40)]


def test_the_video_keeps_the_input_frame_rate(tmp_path):
    frames = [image((k * 50, k * 50, k * 50), "/videos/clip.avi", frame=k, fps=10.0) for k in range(4)]
    out = write(tmp_path, {"video_filename": "out.avi"}, frames)
    fps, read = read_video(out / "out.avi")
    assert fps == pytest.approx(10.0) and len(read) == 4


def test_video_fps_overrides_and_still_images_default_to_30(tmp_path):
    frames = [image(0, "/videos/clip.avi", frame=k, fps=10.0) for k in range(2)]
    out = write(tmp_path / "a", {"video_filename": "out.avi", "video_fps": 25.0}, frames)
    assert read_video(out / "out.avi")[0] == pytest.approx(25.0)
    stills = [image(0, f"/d/{k}.jpg", frame=k) for k in range(2)]
    out = write(tmp_path / "b", {"video": "always", "video_filename": "out.avi"}, stills)
    assert read_video(out / "out.avi")[0] == pytest.approx(30.0)


def test_frames_lost_upstream_keep_their_place_in_time(tmp_path):
    # Frames 2 and 3 never arrive: frame 1 is shown in their place, so frame 4 stays at 0.4 s.
    frames = [image((k * 40, k * 40, k * 40), "/videos/clip.avi", frame=k, fps=10.0) for k in (0, 1, 4, 5)]
    out = write(tmp_path, {"video_filename": "out.avi"}, frames)
    _, read = read_video(out / "out.avi")
    assert [int(round(f.mean() / 40)) for f in read] == [0, 1, 1, 1, 4, 5]


def test_still_images_in_a_video_are_never_repeated(tmp_path):
    # Still images' frame numbers are file indices (a bad file skipped leaves a gap): no repeats.
    stills = [image(k * 40, f"/d/{k}.jpg", frame=k) for k in (0, 3, 4)]
    out = write(tmp_path, {"video": "always", "video_filename": "out.avi"}, stills)
    assert len(read_video(out / "out.avi")[1]) == 3


def test_file_names_of_video_frames_are_not_remembered(tmp_path):
    h = Harness(ImageWriter, {"folder": str(tmp_path), "video": "never"}).start()
    for k in range(50):
        h.feed("image", image(0, "camera:0", frame=k))
        h.run_pending()
    h.feed("image", image(0, "/d/a.jpg"))
    h.run_pending()
    assert h.component._seen == {"a.jpg"}
    h.stop()


def test_auto_video_mode_writes_frames_of_a_video_file_into_a_video(tmp_path):
    frames = [image((k * 60, 0, 0), "/videos/walk.mp4", frame=k) for k in range(3)]
    out = write(tmp_path, {"format": "png"}, frames + [image(0, "camera:1", frame=4), image(0, "/d/still.png")])
    assert sorted(p.name for p in out.iterdir()) == ["camera_1_000004.png", "still.png", "walk.mp4"]
    capture = cv2.VideoCapture(str(out / "walk.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()


def test_each_input_video_gets_its_own_output_video_in_auto_mode(tmp_path):
    """A folder of two videos: two output videos, each with its own frames (before: the second
    video's frames were appended to the first one's)."""
    frames = [image((k * 60, 0, 0), "/videos/a.mp4", frame=k) for k in range(3)]
    frames += [image((0, k * 60, 0), "/clips/b.avi", frame=k) for k in range(2)]
    frames += [image(0, "/more/a.mp4", frame=0)]  # another a.mp4: a name of its own
    out = write(tmp_path, {"video_filename": "first.avi"}, frames)
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4", "first.avi"]
    _, first = read_video(out / "first.avi")
    _, second = read_video(out / "b.mp4")
    assert len(first) == 3 and len(second) == 2 and len(read_video(out / "a.mp4")[1]) == 1
    assert [int(round(f[..., 0].mean() / 60)) for f in first] == [0, 1, 2]
    assert [int(round(f[..., 1].mean() / 60)) for f in second] == [0, 1]


@pytest.mark.parametrize("video", ["never", "auto"])
def test_an_output_never_replaces_the_input_it_was_read_from(tmp_path, video):
    """Output folder = input folder: the writer stops the app with one line instead of writing
    over the input (before: bus.jpg was replaced by its annotated copy, even read-only)."""
    from graphflow import NodeError

    source = tmp_path / ("clip.mp4" if video == "auto" else "a.jpg")
    source.write_bytes(b"the user's file")
    h = Harness(ImageWriter, {"folder": str(tmp_path), "video": video}).start()
    h.feed("image", image(0, str(source)))
    with pytest.raises(NodeError, match=f"^{source} is the input it was read from: write the outputs to another folder$"):
        h.run_pending()
    h.stop()
    assert source.read_bytes() == b"the user's file"
    h = Harness(ImageWriter, {"folder": str(tmp_path / "out"), "video": video}).start()  # elsewhere: written
    h.feed("image", image(0, str(source)))
    h.run_pending()
    h.stop()
    assert (tmp_path / "out" / source.name).stat().st_size > 0 and source.read_bytes() == b"the user's file"


# -- names that collide, names that are not UTF-8, writes that fail --------------------------------
def test_two_inputs_never_share_an_output_name(tmp_path):
    """a.jpg, a.png and a_000001.jpg: the second's name, a_000001.jpg (its frame 1), is the third's
    own, which then gets its frame number (2); each of the three gets a file of its own."""
    out = write(tmp_path, {"format": "jpg"}, [image((10, 10, 10), "/d/a.jpg", frame=0),
                                              image((100, 100, 100), "/d/a.png", frame=1),
                                              image((200, 200, 200), "/d/a_000001.jpg", frame=2)])
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "a_000001.jpg", "a_000001_000002.jpg"]
    shades = sorted(int(cv2.imread(str(p))[0, 0, 0]) // 10 * 10 for p in out.iterdir())
    assert shades == [10, 100, 200]  # (JPEG rounds a little)


def test_a_source_name_that_is_not_utf8_is_written_with_replacement_characters(tmp_path):
    """A file named b'\\xff\\xfe.jpg' reaches Python as '\\udcff\\udcfe.jpg'; OpenCV's imwrite and
    VideoWriter crashed the process (SIGSEGV) on such a path."""
    source = "/d/" + b"\xff\xfe.jpg".decode("utf-8", "surrogateescape")
    out = write(tmp_path, {"format": "png"}, [image((1, 2, 3), source)])
    assert [p.name for p in out.iterdir()] == ["\ufffd\ufffd.png"]
    assert tuple(cv2.imread(str(out / "\ufffd\ufffd.png"))[0, 0]) == (1, 2, 3)
    videos = write(tmp_path / "v", {"video": "always"}, [image((1, 2, 3), source, fps=5.0)])
    assert [p.name for p in videos.iterdir()] == ["\ufffd\ufffd.mp4"]


def test_a_write_that_fails_stops_the_app_in_one_line(tmp_path):
    h = Harness(ImageWriter, {"folder": str(tmp_path / "out")}).start()
    (tmp_path / "out").rmdir()  # the folder went away (an unmounted disk, a cleanup job)
    h.feed("image", image(0, "/d/a.jpg"), acqtime=1.0)
    with pytest.raises(NodeError, match=r"^cannot write .*a\.jpg: No such file or directory$"):
        h.run_pending()


@pytest.mark.parametrize("config, message", [
    ({"video_filename": "sub/x.mp4"}, r"give a file name \(no folder\)"),
    ({"video_filename": "x.gif"}, "ending in .mp4"),
    ({"video_filename": "x"}, "ending in .mp4"),
    ({"video_fps": 0.001}, "at least 0.01 frames/s"),
])
def test_video_params_no_writer_can_use_are_refused_at_start(tmp_path, config, message):
    with pytest.raises(NodeError, match=message):
        Harness(ImageWriter, {"folder": str(tmp_path / "out"), "video": "always", **config}).start()


def test_a_frame_rate_the_mpeg4_encoder_cannot_take_as_it_is_is_rounded(tmp_path):
    """84.219 frames/s would need a time base of 1000/84219; MPEG-4 takes 16 bits (84.22: 50/4211)."""
    out = write(tmp_path, {"video": "always"}, [image(k * 60, "/d/clip.mp4", frame=k, fps=84.219) for k in range(3)])
    fps, frames = read_video(out / "clip.mp4")
    assert fps == pytest.approx(84.22, abs=0.01) and len(frames) == 3
