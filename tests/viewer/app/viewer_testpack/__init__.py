"""viewer_testpack: small nodes for the viewer's tests and benchmark — an image source, a fake
pose detector (Skeleton2List, its joint count set by a threshold) and fake heatmaps
(vision/Tensors with one float32 [19, 46, 54] tensor)."""
