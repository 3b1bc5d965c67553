"""ml.ColorCameraEncoder (CPU) and ml.ColorCameraEncoderCuda: values, layout, transform, padding,
GPU parity (on a GPU, and with the CUDA kernel emulated on the CPU) and the CPU fallback."""
import logging

import cv2
import numpy as np
import pytest

from graphflow.testing import Harness
from graphflow.packs.ml._cuda import cupy_with_device
from graphflow.packs.ml._encoding import plan
from graphflow.packs.ml.color_camera_encoder import ColorCameraEncoder
from graphflow.packs.ml.color_camera_encoder_cuda import KERNEL_SOURCE, ColorCameraEncoderCuda
from graphflow.packs.vision.messages import Image
from tests.conftest import DATA
from tests.ml import cuda_emulation

BUS = DATA / "images" / "bus.jpg"


def encode(config, pixels, cls=ColorCameraEncoder, color_order="bgr"):
    h = Harness(cls, config).start()
    h.feed("rgb_image", Image(pixels=pixels, color_order=color_order, source="x.png", frame=7), acqtime=2.5)
    assert h.run_pending() == 1
    message = h.outputs("tensor")[0]
    assert message.acqtime == 2.5 and message.payload.source == "x.png" and message.payload.frame == 7
    return message.payload


def random_image(h=4, w=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode, gain, bias", [("None", 1, 0), ("Unit", 1 / 255, 0),
                                              ("PositiveNegative", 1 / 127.5, -1), ("HalfAndHalf", 1 / 255, -0.5)])
def test_values_match_a_hand_computation(mode, gain, bias):
    pixels = random_image()
    # linear at exactly half size averages each 2×2 block; "201" puts channels first
    out = encode({"rows": 2, "cols": 3, "keep_aspect_ratio": False, "interpolation": "linear",
                  "pixel_normalization_mode": mode}, pixels)
    tensor = out.get("image")
    expected = pixels.astype(np.float64).reshape(2, 2, 3, 2, 3).mean(axis=(1, 3)) * gain + bias
    assert tensor.shape == (1, 3, 2, 3) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0], expected.transpose(2, 0, 1), atol=1e-5)


def test_channel_order_index_order_and_batch_dim():
    pixels = random_image()
    out = encode({"rows": 4, "cols": 6, "keep_aspect_ratio": False, "interpolation": "nearest",
                  "channel_order": "rgb", "tensor_index_order": "012", "batch_dim": False,
                  "tensor_name": "input_1"}, pixels)
    assert out.names == ["input_1"]
    np.testing.assert_array_equal(out.tensors[0], pixels[:, :, ::-1].astype(np.float32))
    # an RGB image handed to a model that wants BGR is flipped the other way
    out = encode({"rows": 4, "cols": 6, "keep_aspect_ratio": False, "interpolation": "nearest"},
                 pixels, color_order="rgb")
    np.testing.assert_array_equal(out.tensors[0][0], pixels[:, :, ::-1].transpose(2, 0, 1))


def test_grey_images_become_three_channels():
    grey = random_image()[:, :, 0]
    out = encode({"rows": 4, "cols": 6, "keep_aspect_ratio": False, "interpolation": "nearest"}, grey)
    np.testing.assert_array_equal(out.tensors[0][0], np.repeat(grey[None], 3, 0))


def test_width_from_aspect_ratio_rounds_to_the_size_multiple():
    pixels = cv2.imread(str(BUS)) if BUS.exists() else random_image(1080, 810)
    out = encode({"rows": 368}, pixels)
    # 810 * 368 / 1080 = 276 = 34.5 × 8 → 35 × 8 = 280 (tf-pose's way)
    assert out.tensors[0].shape == (1, 3, 368, 280)
    t = out.transform
    assert (t.image_width, t.image_height) == (810, 1080)
    assert t.scale_x == pytest.approx(810 / 280) and t.scale_y == pytest.approx(1080 / 368)
    assert plan(1080, 810, 0, 280, True, 8).rows == 376  # 1080 * 280 / 810 = 373.3 → 376


def blob_image(h, w, center, sigma=10.0):
    yy, xx = np.mgrid[0:h, 0:w]
    blob = 250 * np.exp(-((xx - center[0]) ** 2 + (yy - center[1]) ** 2) / (2 * sigma ** 2))
    return np.repeat(blob[:, :, None], 3, axis=2).round().astype(np.uint8)


def centroid(values):
    yy, xx = np.mgrid[0:values.shape[0], 0:values.shape[1]]
    return np.array([(xx * values).sum(), (yy * values).sum()]) / values.sum()


@pytest.mark.parametrize("rows, cols, size", [(120, 160, (300, 500)), (368, 432, (200, 150))])
def test_transform_maps_a_blob_back_to_where_it_was(rows, cols, size):
    h, w = size
    pixels = blob_image(h, w, np.array([w * 0.37, h * 0.61]), sigma=0.03 * max(h, w))
    out = encode({"rows": rows, "cols": cols, "keep_aspect_ratio": True, "interpolation": "linear"}, pixels)
    transform = out.transform
    found = transform.to_image(centroid(out.tensors[0][0, 0].astype(np.float64)))
    np.testing.assert_allclose(found, centroid(pixels[:, :, 0].astype(np.float64)), atol=0.05 * transform.scale_x)


@pytest.mark.parametrize("rows, cols, size", [(120, 160, (200, 250)), (368, 432, (90, 120)), (64, 0, (150, 250))])
def test_transform_is_exact_on_coordinate_ramps(rows, cols, size):
    """Pixels whose values are their own x and y: linear resizing reproduces a linear function
    exactly, so tensor pixel (x, y) holds the image coordinates it maps to — and back."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    pixels = np.stack([xx, yy, np.zeros_like(xx)], axis=2).astype(np.uint8)
    out = encode({"rows": rows, "cols": cols, "keep_aspect_ratio": True, "interpolation": "linear"}, pixels)
    tensor, transform = out.tensors[0][0], out.transform
    resized_w, resized_h = round(w / transform.scale_x), round(h / transform.scale_y)
    ty, tx = np.mgrid[0:resized_h, 0:resized_w]
    mapped = transform.to_image(np.stack([tx, ty], axis=-1).astype(np.float64))
    inside = (mapped >= 0).all(-1) & (mapped[..., 0] <= w - 1) & (mapped[..., 1] <= h - 1)  # borders clamp
    assert inside.mean() > 0.9
    np.testing.assert_allclose(tensor[0, :resized_h, :resized_w][inside], mapped[inside][:, 0], atol=1e-3)
    np.testing.assert_allclose(tensor[1, :resized_h, :resized_w][inside], mapped[inside][:, 1], atol=1e-3)
    # and back: an image pixel maps to the tensor pixel whose value is that pixel's coordinates
    image_xy = np.array([w * 0.4, h * 0.7]).round()
    tensor_xy = (image_xy - [transform.offset_x, transform.offset_y]) / [transform.scale_x, transform.scale_y]
    x, y = tensor_xy.round().astype(int)
    near = transform.to_image(np.array([x, y], dtype=np.float64))
    assert np.allclose([tensor[0, y, x], tensor[1, y, x]], near, atol=1e-3)
    assert np.all(np.abs(near - image_xy) <= 0.5 * np.array([transform.scale_x, transform.scale_y]) + 1e-9)


def test_keep_aspect_ratio_pads_bottom_right_with_pad_value():
    pixels = np.full((100, 200, 3), 200, np.uint8)
    out = encode({"rows": 80, "cols": 80, "keep_aspect_ratio": True, "pad_value": 114.0,
                  "pixel_normalization_mode": "Unit"}, pixels)
    tensor = out.tensors[0][0]
    assert tensor.shape == (3, 80, 80)
    np.testing.assert_allclose(tensor[:, :40, :], 200 / 255, atol=1e-6)   # 200×100 scaled by 0.4
    np.testing.assert_allclose(tensor[:, 40:, :], 114 / 255, atol=1e-6)
    t = out.transform
    assert t.scale_x == pytest.approx(2.5) and t.scale_y == pytest.approx(2.5)
    assert t.offset_x == pytest.approx(0.75) and t.offset_y == pytest.approx(0.75)
    # the bottom-right image pixel centre maps inside the unpadded area
    corner = (np.array([199.0, 99.0]) - 0.75) / 2.5
    assert corner[0] < 80 and corner[1] < 40


def test_stretch_without_keep_aspect_ratio():
    out = encode({"rows": 50, "cols": 50, "keep_aspect_ratio": False}, random_image(100, 200))
    assert out.tensors[0].shape == (1, 3, 50, 50)
    assert out.transform.scale_x == pytest.approx(4.0) and out.transform.scale_y == pytest.approx(2.0)


def _has_cuda():
    try:
        cupy_with_device()
        return True
    except RuntimeError:
        return False


GPU_CONFIGS = [{"rows": 368}, {"rows": 200, "cols": 200, "keep_aspect_ratio": True},
               {"rows": 600, "cols": 500, "keep_aspect_ratio": False, "channel_order": "rgb",
                "tensor_index_order": "012", "batch_dim": False}]


@pytest.mark.skipif(not _has_cuda(), reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
@pytest.mark.parametrize("config", GPU_CONFIGS)
def test_cuda_matches_cpu(interpolation, config):
    pixels = cv2.imread(str(BUS)) if BUS.exists() else random_image(480, 640)
    config = dict(config, interpolation=interpolation, pixel_normalization_mode="Unit")
    cpu = encode(config, pixels).tensors[0]
    gpu = encode(config, pixels, ColorCameraEncoderCuda).tensors[0]
    assert isinstance(gpu, np.ndarray) and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, atol=1e-5)


@pytest.fixture(scope="module")
def emulated_kernel(tmp_path_factory):
    if cuda_emulation.compiler() is None:
        pytest.skip("needs a C++ compiler to run the CUDA kernel on the CPU")
    return cuda_emulation.EmulatedKernel(KERNEL_SOURCE, "resize_normalize", tmp_path_factory.mktemp("kernel"))


def encode_with_emulated_kernel(config, pixels, kernel, color_order="bgr"):
    """The Cuda node's own GPU code path (its encode(), the kernel source and its arguments), with
    CuPy's calls on host memory and the kernel run by the CPU emulation."""
    h = Harness(ColorCameraEncoderCuda, config).start()
    h.component._cupy, h.component._kernel = cuda_emulation.HOST_CUPY, kernel
    h.feed("rgb_image", Image(pixels=pixels, color_order=color_order), acqtime=1.0)
    assert h.run_pending() == 1
    return h.outputs("tensor")[0].payload.tensors[0]


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
# 1e-5 on 0..1 (the documented parity); on raw 0..255, cubic's 16-term sums differ by float rounding (3e-4).
@pytest.mark.parametrize("normalization, atol", [("Unit", 1e-5), ("None", 1e-3)])
@pytest.mark.parametrize("config", GPU_CONFIGS)
def test_emulated_cuda_kernel_matches_cpu(emulated_kernel, interpolation, normalization, atol, config):
    pixels = cv2.imread(str(BUS)) if BUS.exists() else random_image(480, 640)
    config = dict(config, interpolation=interpolation, pixel_normalization_mode=normalization)
    cpu = encode(config, pixels).tensors[0]
    emulated = encode_with_emulated_kernel(config, pixels, emulated_kernel)
    assert emulated.shape == cpu.shape and emulated.dtype == np.float32
    np.testing.assert_allclose(emulated, cpu, atol=atol)


def test_emulated_cuda_kernel_nearest_picks_the_centre_pixel(emulated_kernel):
    """Nearest is centre-aligned (cv2.INTER_NEAREST_EXACT); integer down-scaling has no ties."""
    pixels = random_image(60, 90, seed=3)
    config = {"rows": 20, "cols": 30, "interpolation": "nearest", "pixel_normalization_mode": "None",
              "tensor_index_order": "201", "batch_dim": False}
    emulated = encode_with_emulated_kernel(config, pixels, emulated_kernel)
    np.testing.assert_array_equal(emulated, pixels[1::3, 1::3].transpose(2, 0, 1).astype(np.float32))
    np.testing.assert_array_equal(emulated, encode(config, pixels).tensors[0])


def test_emulated_cuda_kernel_nearest_matches_cpu_except_at_exact_ties(emulated_kernel):
    """At an exact tie (a pixel centre mapping to a source pixel border) cv2's fixed-point
    arithmetic picks either side; everywhere else both pick the same pixel."""
    pixels = cv2.imread(str(BUS)) if BUS.exists() else random_image(1080, 810)
    config = {"rows": 333, "cols": 517, "keep_aspect_ratio": False, "interpolation": "nearest",
              "pixel_normalization_mode": "None", "tensor_index_order": "012", "batch_dim": False}
    emulated = encode_with_emulated_kernel(config, pixels, emulated_kernel)
    cpu = encode(config, pixels).tensors[0]

    def ties(source, resized):
        return ((2 * np.arange(resized) + 1) * source) % (2 * resized) == 0

    tie_rows, tie_cols = ties(pixels.shape[0], 333), ties(pixels.shape[1], 517)
    assert tie_rows.any()  # this size has ties: the test would prove nothing otherwise
    away = ~tie_rows[:, None] & ~tie_cols[None, :]
    np.testing.assert_array_equal(emulated[away], cpu[away])


def test_emulated_cuda_kernel_reads_channel_reversed_views(emulated_kernel):
    """An RGB image asked for in BGR arrives as a reversed view; the kernel swaps channels itself."""
    pixels = random_image(50, 70, seed=4)
    config = {"rows": 40, "cols": 48, "interpolation": "linear", "pixel_normalization_mode": "Unit",
              "channel_order": "bgr", "keep_aspect_ratio": True, "pad_value": 0.5}
    expected = encode(config, pixels, color_order="rgb").tensors[0]
    emulated = encode_with_emulated_kernel(config, pixels, emulated_kernel, color_order="rgb")
    np.testing.assert_allclose(emulated, expected, atol=1e-5)


@pytest.mark.skipif(_has_cuda(), reason="checks the fallback on machines without CUDA")
def test_cuda_variant_falls_back_to_cpu_saying_so_in_a_debug_line(caplog):
    """No GPU here: nothing for the user to act on, so no warning; -v shows why the CPU runs it."""
    pixels = random_image(60, 80)
    config = {"rows": 32, "interpolation": "cubic"}
    with caplog.at_level(logging.DEBUG):
        h = Harness(ColorCameraEncoderCuda, config).start()
        for k in range(3):
            h.feed("rgb_image", Image(pixels=pixels), acqtime=float(k))
        assert h.run_pending() == 3
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len([line for line in debug if "encoding on the CPU instead" in line]) == 1
    expected = encode(config, pixels).tensors[0]
    for message in h.outputs("tensor"):
        np.testing.assert_array_equal(message.payload.tensors[0], expected)


def test_an_image_whose_aspect_ratio_needs_a_giant_tensor_is_skipped_and_the_next_is_encoded(caplog):
    """A 1×5000 strip at rows 368 wants 1,840,000 columns (22 GB of float32): before, the encoder
    tried to allocate it (and the app died out of memory, losing every earlier frame)."""
    from graphflow.packs.ml.color_camera_encoder import MAX_SIDE

    h = Harness(ColorCameraEncoder, {"rows": 368}).start()
    h.feed("rgb_image", Image(pixels=np.zeros((1, 5000, 3), np.uint8), source="strip.png"))
    h.feed("rgb_image", Image(pixels=np.zeros((368, MAX_SIDE + 16, 3), np.uint8), source="wide.png"))
    h.feed("rgb_image", Image(pixels=random_image(40, 60), source="fine.png"))
    with caplog.at_level(logging.WARNING):
        h.run_pending()
    shapes = [m.payload.tensors[0].shape for m in h.outputs("tensor")]
    assert shapes == [(1, 3, 368, 552)]  # 60 * 368 / 40 = 552: only fine.png
    said = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert said[0] == f"node/component: strip.png (5000×1) would need a 1840000×368 tensor (at most {MAX_SIDE} a side): skipped"
    assert said[1].startswith("node/component: wide.png") and len(said) == 2
    h.stop()


def test_a_tensor_side_at_the_limit_is_encoded_and_params_beyond_it_are_refused():
    from graphflow.packs.ml.color_camera_encoder import MAX_SIDE
    out = encode({"rows": 8, "cols": MAX_SIDE, "keep_aspect_ratio": False, "interpolation": "nearest"},
                 random_image(2, 3))
    assert out.tensors[0].shape == (1, 3, 8, MAX_SIDE)
    with pytest.raises(ValueError, match=rf"in \[0, {MAX_SIDE}\], got {MAX_SIDE + 1}"):
        Harness(ColorCameraEncoder, {"rows": MAX_SIDE + 1})


def test_rows_and_cols_both_0_stop_the_app_in_one_line():
    from graphflow import NodeError

    with pytest.raises(NodeError, match="^rows and cols are both 0: set one of them"):
        Harness(ColorCameraEncoder, {"rows": 0, "cols": 0}).start()


# -- auto contrast --------------------------------------------------------------------------------
# Expected tensors come from the documented rule, computed here: the range holding all but the
# darkest and brightest 0.1% of the values, stretched linearly to 0..255 and clipped.
SAME_SIZE = {"rows": 40, "cols": 50, "keep_aspect_ratio": False, "interpolation": "nearest",
             "pixel_normalization_mode": "None", "tensor_index_order": "012", "batch_dim": False}


def spread_over(low, high, seed=0):
    """A 40×50 image (6,000 values) spread over low..high, both ends present."""
    pixels = np.random.default_rng(seed).integers(low, high + 1, (40, 50, 3), dtype=np.uint8)
    pixels[20, 20] = (low, high, low)
    return pixels


def stretched(pixels, low, high):
    return np.clip((pixels.astype(np.float64) - low) * 255.0 / (high - low), 0, 255)


def test_auto_contrast_stretches_a_dark_image_to_the_full_range():
    pixels = spread_over(10, 73)
    tensor = encode(dict(SAME_SIZE, auto_contrast=True), pixels).tensors[0]
    np.testing.assert_allclose(tensor, stretched(pixels, 10, 73), atol=1e-3)
    assert tensor.min() == 0.0 and tensor.max() == pytest.approx(255.0)
    # off by default: the encoder passes the pixels as they are
    np.testing.assert_array_equal(encode(SAME_SIZE, pixels).tensors[0], pixels)


@pytest.mark.parametrize("outliers, low, high", [(6, 60, 187), (7, 0, 255)])
def test_auto_contrast_ignores_the_outermost_tenth_of_a_percent(outliers, low, high):
    """6 of 6,000 values (0.1%) at each end do not set the range; 7 do (then the range is full)."""
    pixels = spread_over(60, 187, seed=1)
    flat = pixels.reshape(-1)
    flat[:7] = 100
    flat[7:14] = 100
    flat[:outliers] = 0
    flat[7:7 + outliers] = 255
    tensor = encode(dict(SAME_SIZE, auto_contrast=True), pixels).tensors[0]
    np.testing.assert_allclose(tensor, stretched(pixels, low, high), atol=1e-3)


@pytest.mark.parametrize("high, changed", [(116, True), (115, False)])
def test_auto_contrast_leaves_a_range_under_16_levels_alone(high, changed):
    """A frame of fewer levels (a black frame's noise, a blank wall) is not blown up to 0..255."""
    pixels = spread_over(100, high, seed=2)
    tensor = encode(dict(SAME_SIZE, auto_contrast=True), pixels).tensors[0]
    np.testing.assert_allclose(tensor, stretched(pixels, 100, high) if changed else pixels, atol=1e-3)


def test_auto_contrast_leaves_a_full_range_image_alone():
    pixels = cv2.imread(str(BUS)) if BUS.exists() else random_image(480, 640)
    config = {"rows": 368, "interpolation": "cubic"}
    np.testing.assert_array_equal(encode(dict(config, auto_contrast=True), pixels).tensors[0],
                                  encode(config, pixels).tensors[0])


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_emulated_cuda_kernel_stretches_like_the_cpu(emulated_kernel, interpolation):
    pixels = cv2.imread(str(BUS)) if BUS.exists() else random_image(480, 640)
    dark = (pixels * 0.1).astype(np.uint8)
    config = {"rows": 368, "interpolation": interpolation, "pixel_normalization_mode": "Unit", "auto_contrast": True}
    cpu = encode(config, dark).tensors[0]
    assert cpu.max() > 0.9  # stretched: the dark image alone stays under 0.1
    np.testing.assert_allclose(encode_with_emulated_kernel(config, dark, emulated_kernel), cpu, atol=1e-4)


def test_the_cuda_variant_clips_pixels_deeper_than_8_bits_as_the_cpu_does(emulated_kernel):
    """The kernel reads bytes: a 16-bit image (a depth camera, a raw sensor) is encoded on the
    CPU, its values clipped at 255, not wrapped modulo 256 on upload (4000 would read as 160)."""
    pixels = np.full((40, 60, 3), 4000, np.uint16)
    pixels[:, :30] = 100
    config = {"rows": 20, "cols": 30, "interpolation": "nearest", "pixel_normalization_mode": "None",
              "tensor_index_order": "012", "batch_dim": False}
    emulated = encode_with_emulated_kernel(config, pixels, emulated_kernel)
    assert set(np.unique(emulated)) == {100.0, 255.0}
    np.testing.assert_array_equal(emulated, encode(config, pixels).tensors[0])
