"""viz: drawing skeletons on images and writing images, videos and COCO-style predictions."""
