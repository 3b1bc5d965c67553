"""openpose.MaxPool — step 3: max-pooling of the part heatmaps."""
from graphflow import NodeError, Param, Rx, Tx
from graphflow.packs.vision.messages import Tensors

from . import paf
from ._step import _Step
from .messages import PoseMaps


class MaxPool(_Step):
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

    def read_params(self):
        self._parts = slice(0, self.num_parts)
        self._factor = self.upsample
        self._kernel = self.kernel
        self._names = self.heatmaps_tensor, self.pafs_tensor
        # the model's own pooled heatmaps fit only its native grid
        self._model_pooled = self.pooled_tensor if self.upsample == 1 else ""

    def start(self):
        paf.warm_up()  # compile or load the step kernels now, not on the first frame
        self.read_params()
        self.tick_on_message(self.maps)

    def tick(self):
        message = self.maps.read()
        outputs = message.payload
        heatmaps = _tensor(outputs, self._names[0], "heatmaps_tensor")[0, self._parts]
        pafs = _tensor(outputs, self._names[1], "pafs_tensor")[0]
        if self._factor != 1:
            heatmaps, pafs = paf.upsample(heatmaps, pafs, self._factor)
        if self._model_pooled:
            pooled = _tensor(outputs, self._model_pooled, "pooled_tensor")[0, self._parts]
        else:
            pooled = paf.max_pool(heatmaps, self._kernel)
        self.pooled.publish(PoseMaps(heatmaps, pafs, pooled, self._factor, outputs.transform,
                                     outputs.source, outputs.frame), acqtime=message.acqtime)


def _tensor(outputs, name: str, param: str):
    """The tensor the param names; a name the model does not output is the user's to fix."""
    try:
        return outputs.get(name)
    except KeyError:
        raise NodeError(f"{param} {name!r} is not one of the tensors received: {', '.join(outputs.names)}") from None
