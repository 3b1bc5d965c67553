"""viz.ImageWriter: file names for stills, videos and repeats; formats; video output."""
import cv2
import numpy as np

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


def image(value, source, frame=0, order="bgr"):
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:] = value
    return Image(pixels=pixels, source=source, frame=frame, color_order=order)


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
    capture = cv2.VideoCapture(str(out / "annotated.avi"))
    read = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        read.append(frame)
    capture.release()
    assert len(read) == 5 and read[0].shape == (32, 48, 3)
    assert [int(round(f.mean() / 50)) for f in read[:4]] == [0, 1, 2, 3]


def test_the_input_blocks_instead_of_dropping():
    assert ImageWriter.image.policy == "block"


def test_auto_video_mode_writes_frames_of_a_video_file_into_a_video(tmp_path):
    frames = [image((k * 60, 0, 0), "/videos/walk.mp4", frame=k) for k in range(3)]
    out = write(tmp_path, {"format": "png"}, frames + [image(0, "camera:1", frame=4), image(0, "/d/still.png")])
    assert sorted(p.name for p in out.iterdir()) == ["camera_1_000004.png", "still.png", "walk.mp4"]
    capture = cv2.VideoCapture(str(out / "walk.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()
