"""vision: the message types that image, tensor and keypoint nodes share (io, ml, openpose, viz
and third-party packs). It has no nodes of its own."""
