"""View-synthesis networks, one file each: ``seed`` (the article's) and ``warp`` (disparity + warp + inpaint).

Both map ``image (B, 3, H, W)`` and ``nearness (B, 1, H, W)`` to a dict with ``"pred"``, the other eye
``(B, 3, H, W)``; ``warp`` adds ``"disparity"`` (target view, pixels) and ``"occlusion"`` (its inpaint mask).
"""
