"""Stereo stage: nearness -> disparity -> the other eye.

The conventions, stated once for the whole project:

* **Nearness.** Every depth backend returns ``(B, 1, H, W)`` in ``[0, 1]``, normalised per frame,
  **larger = nearer** (like inverse depth). Nothing else in the project uses metric depth.
* **Disparity.** ``d = x_left - x_right`` in pixels of the full-resolution frame. A point with ``d > 0``
  appears in front of the screen, ``d = 0`` on it, ``d < 0`` behind it. Nearer points have larger ``d``.
* **Direction.** ``direction=+1`` makes the right eye from the left (``x_right = x_left - d``),
  ``direction=-1`` the left eye from the right (``x_left = x_right + d``).
* **Sampling.** ``grid_sample`` with ``align_corners=False``: pixel ``i`` of a row of width ``W`` has its
  centre at normalised ``(2 i + 1) / W - 1``; :func:`s3d.stereo.warp.base_grid` builds the grid to match.
"""

from s3d.stereo.disparity import nearness_to_disparity
from s3d.stereo.fill import fill_from_background
from s3d.stereo.warp import backward_warp, forward_disparity, synthesize_view

__all__ = [
    "nearness_to_disparity",
    "backward_warp",
    "forward_disparity",
    "synthesize_view",
    "fill_from_background",
]
