"""The article's model: frame + depth + CoordConv channels -> the other eye's pixels.

An encoder-decoder with skip connections (the two views are alike) whose last residual blocks use
horizontally elongated kernels (the views differ mostly by horizontal shifts). The depth comes from a
frozen backend and is normalised; the output is a residual on the input eye, squashed to ``[0, 1]``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from s3d.models.common import UNet, ViewModel, ViewPrediction, coord_channels


class SeedNet(ViewModel):
    def __init__(self, width: int = 32, depth: int = 3, tail: int = 2, tail_kernel: tuple[int, int] = (3, 7)):
        super().__init__()
        self.body = UNet(3 + 1 + 2, width, depth, tail, tail_kernel)
        self.head = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, image: torch.Tensor, nearness: torch.Tensor | None) -> ViewPrediction:
        """``image (B, 3, H, W)``, ``nearness (B, 1, H, W)`` -> the other eye ``pred (B, 3, H, W)``."""
        if nearness is None:
            raise ValueError("the seed model needs a nearness input")
        if image.shape[1] != 3 or nearness.shape[1] != 1 or image.shape[-2:] != nearness.shape[-2:]:
            raise ValueError(f"expected image (B, 3, H, W) and nearness (B, 1, H, W), got {tuple(image.shape)}, {tuple(nearness.shape)}")
        x = torch.cat((image * 2 - 1, nearness * 2 - 1, coord_channels(image)), dim=1)
        return ViewPrediction((image + self.head(self.body(x))).clamp(0, 1))
