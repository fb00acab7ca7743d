"""Pieces both models use: CoordConv channels and convolution blocks."""

from __future__ import annotations

import torch
import torch.nn as nn


def coord_channels(x: torch.Tensor) -> torch.Tensor:
    """CoordConv inputs: x and y in ``[-1, 1]``. ``(B, C, H, W) -> (B, 2, H, W)``."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy)).expand(b, 2, h, w)


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))


class ResBlock(nn.Module):
    """Residual block; ``kernel=(3, 7)`` makes it horizontally elongated (the eyes differ by horizontal shifts)."""

    def __init__(self, channels: int, kernel: tuple[int, int] = (3, 3)):
        super().__init__()
        pad = (kernel[0] // 2, kernel[1] // 2)
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel, padding=pad),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, kernel, padding=pad),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.leaky_relu(x + self.body(x), 0.2)


class UNet(nn.Module):
    """Encoder-decoder with skip connections; ``tail`` residual blocks at full resolution end it.

    ``(B, cin, H, W) -> (B, width, H, W)``; ``H`` and ``W`` need not be multiples of ``2**depth``.
    """

    def __init__(self, cin: int, width: int = 32, depth: int = 3, tail: int = 2, tail_kernel: tuple[int, int] = (3, 7)):
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.stem = conv_block(cin, chans[0])
        self.down = nn.ModuleList(conv_block(chans[i], chans[i + 1], stride=2) for i in range(depth))
        self.up = nn.ModuleList(conv_block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth)))
        self.tail = nn.Sequential(*[ResBlock(width, tuple(tail_kernel)) for _ in range(tail)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.up:
            skip = skips.pop()
            y = torch.nn.functional.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat((y, skip), dim=1))
        return self.tail(y)
