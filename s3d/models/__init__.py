"""View-synthesis networks, one file each: ``seed`` (the article's), ``warp`` (disparity + warp + inpaint),
``lite0`` (the default: an ImageNet encoder that is its own depth) and ``psmnet`` (the stereo teacher).

The view models subclass :class:`s3d.models.common.ViewModel`: ``image (B, 3, H, W)`` and ``nearness
(B, 1, H, W)`` (or None for a model that is its own depth) -> :class:`s3d.models.common.ViewPrediction`,
the other eye with the disparities (px) and masks that made it. Nothing here imports :mod:`s3d.depth`:
the dependency runs one way, depth backends may build on models (``s3d_lite0``), never the reverse.
"""
