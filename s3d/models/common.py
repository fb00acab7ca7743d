"""What every view-synthesis model shares: the typed result it returns, its base class, CoordConv channels
and convolution blocks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ViewPrediction:
    """A model's other eye and what it used to make it; all ``(B, C, H, W)`` at the input's size.

    Disparities are in pixels of the input's width, in the sign convention of :mod:`s3d.stereo`
    (``backward_warp(source, disparity, direction)``); ``None`` where the model has no such output.
    """

    pred: torch.Tensor  # (B, 3, H, W) the other eye, [0, 1]
    disparity: torch.Tensor | None = None  # (B, 1, H, W) px, in the target (generated) view
    source_disparity: torch.Tensor | None = None  # (B, 1, H, W) px, in the source (input) view
    occlusion: torch.Tensor | None = None  # (B, 1, H, W) in [0, 1]: where the inpainting shows
    warped: torch.Tensor | None = None  # (B, 3, H, W) the warped input before inpainting
    nearness: torch.Tensor | None = None  # (B, 1, H, W) the depth input it was given, if any


class ViewModel(nn.Module):
    """Base of the view-synthesis models: ``forward(image (B, 3, H, W), nearness (B, 1, H, W) | None)
    -> ViewPrediction``."""

    use_depth: bool = True  # False: the model is its own depth, and no depth backend need run for it

    def at_width(self, image: torch.Tensor, depth: Callable[[torch.Tensor], torch.Tensor] | None, work_width: int) -> ViewPrediction:
        """The network run at ``work_width`` (the width it trained at), its results at ``image``'s size:
        the eye upsampled bicubically, disparities bilinearly and in the full width's pixels.
        ``depth``: the nearness of an image, for models that use one."""
        h, w = image.shape[-2:]
        small = F.interpolate(image, size=(round(h * work_width / w), work_width), mode="bilinear", align_corners=False, antialias=True)
        out = self(small, depth(small) if self.use_depth and depth is not None else None)
        up = lambda t, mode: None if t is None else F.interpolate(t, size=(h, w), mode=mode, align_corners=False)  # noqa: E731
        px = lambda t: None if t is None else up(t, "bilinear") * (w / work_width)  # noqa: E731
        return ViewPrediction(up(out.pred, "bicubic"), px(out.disparity), px(out.source_disparity), up(out.occlusion, "bilinear"))


def stride_size(h: float, w: float, stride: int = 32) -> tuple[int, int]:
    """The nearest ``(h, w)`` in whole multiples of an encoder's ``stride`` (at least one): the size a
    network with five stride-2 stages (EfficientNet, DenseNet) runs at."""
    return max(stride, round(h / stride) * stride), max(stride, round(w / stride) * stride)


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
