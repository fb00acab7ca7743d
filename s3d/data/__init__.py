"""Training data: stereo pairs (left eye, right eye) with geometry-preserving augmentation."""
