"""The sharp alternative: predict a disparity, warp the input eye with it, inpaint what it cannot show.

The network sees frame + depth + CoordConv channels and predicts (1) the disparity of the target view in
pixels, as a fraction of the width bounded by ``max_disparity`` (conventions in :mod:`s3d.stereo`),
(2) an occlusion mask and (3) colours for the occluded pixels. The output is
``warp * (1 - mask) + inpaint * mask``: where nothing is occluded every pixel is a resampled input
pixel, so the eye stays as sharp as the input (Deep3D / monodepth style).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from s3d.models.common import UNet, ViewModel, ViewPrediction, coord_channels
from s3d.stereo import backward_warp


class WarpNet(ViewModel):
    def __init__(
        self,
        width: int = 32,
        depth: int = 3,
        tail: int = 2,
        tail_kernel: tuple[int, int] = (3, 7),
        max_disparity: float = 0.1,
        direction: int = 1,
        use_depth: bool = True,
    ):
        super().__init__()
        self.max_disparity, self.direction, self.use_depth = max_disparity, direction, use_depth
        self.body = UNet(3 + int(use_depth) + 2, width, depth, tail, tail_kernel)
        self.disparity = nn.Conv2d(width, 1, 3, padding=1)
        self.mask = nn.Conv2d(width, 1, 3, padding=1)
        self.inpaint = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, image: torch.Tensor, nearness: torch.Tensor | None = None) -> ViewPrediction:
        """``image (B, 3, H, W)``, ``nearness (B, 1, H, W)`` -> pred, disparity (B, 1, H, W) px, occlusion."""
        parts = [image * 2 - 1]
        if self.use_depth:
            if nearness is None:
                raise ValueError("this WarpNet was built with use_depth=True and needs nearness")
            parts.append(nearness * 2 - 1)
        parts.append(coord_channels(image))
        feat = self.body(torch.cat(parts, dim=1))
        w = image.shape[-1]
        disparity = torch.tanh(self.disparity(feat)) * self.max_disparity * w
        occlusion = torch.sigmoid(self.mask(feat) - 2.0)  # starts mostly "not occluded"
        warped = backward_warp(image, disparity, self.direction)
        inpainted = torch.sigmoid(self.inpaint(feat))
        pred = warped * (1 - occlusion) + inpainted * occlusion
        return ViewPrediction(pred, disparity=disparity, occlusion=occlusion, warped=warped)
