"""openpose.MaxPool — step 3: max-pooling of the part heatmaps."""
from graphflow import Codelet, Param, Rx, Tx
from graphflow.packs.vision.messages import Tensors

from . import paf
from .messages import PoseMaps


class MaxPool(Codelet):
    """Step 3: kernel×kernel max pooling (stride 1) of the part heatmaps; optionally upsamples
    both maps first, and is skipped when the model already outputs pooled heatmaps."""

    maps = Rx(Tensors, "Model outputs: heatmaps [1, C, H, W] and PAFs [1, 2L, H, W].", queue_size=2, policy="block")
    pooled = Tx(PoseMaps, "Heatmaps, PAFs and pooled heatmaps of one image.")
    heatmaps_tensor = Param(str, "heatmaps", "Name of the heatmap tensor in maps.")
    pafs_tensor = Param(str, "pafs", "Name of the PAF tensor in maps.")
    pooled_tensor = Param(str, "", "Name of a pooled-heatmap tensor the model outputs itself; "
                                   "when set, this step reuses it instead of pooling.")
    num_parts = Param(int, 18, "Part channels to keep; later channels (background) are dropped.",
                      range=(1, None))
    kernel = Param(int, paf.DEFAULTS["kernel"], "Pooling window, in map cells (odd).", choices=[1, 3, 5, 7])
    upsample = Param(int, paf.DEFAULTS["upsample"], "Resize both maps by this factor before decoding (1 = native grid: "
                             "sub-pixel peaks measured as accurate and much faster).", range=(1, 8))

    def start(self):
        paf.warm_up()  # compile or load the step kernels now, not on the first frame
        self.tick_on_message(self.maps)

    def tick(self):
        message = self.maps.read()
        outputs = message.payload
        heatmaps = outputs.get(self.heatmaps_tensor)[0, : self.num_parts]
        pafs = outputs.get(self.pafs_tensor)[0]
        heatmaps, pafs = paf.upsample(heatmaps, pafs, self.upsample)
        if self.pooled_tensor and self.upsample == 1:
            pooled = outputs.get(self.pooled_tensor)[0, : self.num_parts]
        else:
            pooled = paf.max_pool(heatmaps, self.kernel)
        self.pooled.publish(PoseMaps(heatmaps, pafs, pooled, self.upsample, outputs.transform,
                                     outputs.source, outputs.frame), acqtime=message.acqtime)
