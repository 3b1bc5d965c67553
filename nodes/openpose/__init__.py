"""OpenPose PAF decoding: plain vectorized functions (paf.py) and a synthetic map renderer."""
