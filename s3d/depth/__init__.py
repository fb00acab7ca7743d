"""Depth stage: one interface, one backend per file, chosen by ``conf/depth/*.yaml``.

Every backend maps ``(B, 3, H, W)`` RGB in ``[0, 1]`` to ``(B, 1, H, W)`` **nearness** in ``[0, 1]``,
normalised per frame, larger = nearer (the project's convention, see :mod:`s3d.stereo`).
"""

from s3d.depth.base import DepthBackend, accelerate, build_depth, normalize_nearness, resolve_weights

__all__ = ["DepthBackend", "accelerate", "build_depth", "normalize_nearness", "resolve_weights"]
