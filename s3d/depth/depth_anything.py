"""Depth Anything V2 (Yang et al. 2024) in PyTorch, Small, Base and Large: a DINOv2 ViT/14 encoder and a DPT head.

The encoder is timm's ``vit_{small,base,large}_patch14_dinov2`` (its module layout is the original
DINOv2's), run by hand so that the outputs of four blocks (2, 5, 8, 11; Large 4, 11, 17, 23) come out, each
through the final LayerNorm, as the original's ``get_intermediate_layers(..., norm=True)``. The head is the
original ``DPTHead`` without a readout (``use_clstoken=False`` in all three: the class token is dropped),
its widths per variant (:data:`VARIANTS`): 1x1 projections, resize layers
(x4, x2, x1, /2), ``layerN_rn`` 3x3 convolutions, four fusion blocks and the output convolutions, ending
in a ReLU. Weights come from the Hugging Face port (``s3d.depth.fetch_depth_anything``).

Pre-processing as the original: RGB in ``[0, 1]`` normalised with the ImageNet mean and std, the short
side resized to ``resolution`` (518; up or down) and each side to a multiple of 14 (its ``lower_bound``
resize). Two interpolations follow the Hugging Face port, whose outputs the tests compare against: the
position embeddings are resized bicubically to the patch grid (the original scales by ``(n + 0.1) / 37``
instead, a sub-pixel difference), and the input frame is resized by :class:`DepthBackend` (bilinear,
antialiased) where the original uses OpenCV's bicubic.

The output is relative inverse depth (disparity-like, up to scale and shift): larger = nearer, so it
is already the nearness the depth interface wants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from s3d.depth.base import DepthBackend, resolve_weights
from s3d.io.weights import load_safetensors_into

PATCH = 14
PRETRAIN_SIZE = 518  # 37 x 37 patches: the size of the stored position embeddings
HEAD_FEATURES = 32


@dataclass(frozen=True)
class Variant:
    """One size of the family, as the original's ``model_configs`` and ``intermediate_layer_idx``."""

    encoder: str  # timm name
    layers: tuple[int, ...]  # encoder blocks the head reads
    embed_dim: int
    out_channels: tuple[int, ...]
    features: int
    licence: str


VARIANTS = {
    "small": Variant("vit_small_patch14_dinov2", (2, 5, 8, 11), 384, (48, 96, 192, 384), 64, "Apache-2.0"),
    "base": Variant("vit_base_patch14_dinov2", (2, 5, 8, 11), 768, (96, 192, 384, 768), 128, "CC-BY-NC-4.0"),
    "large": Variant("vit_large_patch14_dinov2", (4, 11, 17, 23), 1024, (256, 512, 1024, 1024), 256, "CC-BY-NC-4.0"),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_multiple(x: float, at_least: int, multiple: int = PATCH) -> int:
    """The original's ``constrain_to_multiple_of``: the nearest multiple, or the next one up if that is below ``at_least``."""
    y = round(x / multiple) * multiple
    return y if y >= at_least else math.ceil(x / multiple) * multiple


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit: ``x + conv2(relu(conv1(relu(x))))``, ``(B, C, h, w)`` in and out."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """Add the skip (through its own residual unit), refine, upsample to ``size`` (or x2) and project 1x1.

    ``(B, C, h, w)`` (+ skip of the same shape) -> ``(B, C, *size)``. The deepest block gets no skip, so
    its ``resConfUnit1`` is never used; it is kept because the weights have it.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(channels)
        self.resConfUnit2 = ResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """Four token maps ``(B, h*w, in_channels)`` on an ``h x w`` patch grid -> ``(B, 1, 14h, 14w)``, ReLU'd."""

    def __init__(self, in_channels: int, features: int, out_channels: tuple[int, ...], head_features: int = HEAD_FEATURES):
        super().__init__()
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, c, 1) for c in out_channels)
        # Strides 4, 8, 14 and 28 pixels from the one 14-pixel grid: the "reassemble" of DPT.
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], 4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], 2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1),
            ]
        )
        for i, c in enumerate(out_channels, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, len(out_channels) + 1):
            setattr(self, f"refinenet{i}", FeatureFusionBlock(features))
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, head_features, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(head_features, 1, 1),
            nn.ReLU(),  # "relative" depth: non-negative disparity
        )

    def forward(self, tokens: list[torch.Tensor], rows: int, cols: int) -> torch.Tensor:
        maps = []
        for i, t in enumerate(tokens):
            x = t.transpose(1, 2).reshape(t.shape[0], t.shape[2], rows, cols)
            x = self.resize_layers[i](self.projects[i](x))
            maps.append(getattr(self, f"layer{i + 1}_rn")(x))
        l1, l2, l3, l4 = maps
        path = self.refinenet4(l4, size=l3.shape[-2:])
        path = self.refinenet3(path, l3, size=l2.shape[-2:])
        path = self.refinenet2(path, l2, size=l1.shape[-2:])
        path = self.refinenet1(path, l1)
        out = self.output_conv1(path)
        out = F.interpolate(out, size=(rows * PATCH, cols * PATCH), mode="bilinear", align_corners=True)
        return self.output_conv2(out)


class DepthAnythingNet(nn.Module):
    """``(B, 3, H, W)`` ImageNet-normalised RGB, ``H`` and ``W`` multiples of 14 -> ``(B, 1, H, W)``
    relative inverse depth (>= 0, larger = nearer).

    ``variant``: a key of :data:`VARIANTS`. ``init=False`` skips the random initialisation, for a network
    whose weights are loaded next.
    """

    def __init__(self, variant: str = "small", init: bool = True):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got '{variant}'")
        v = self.variant = VARIANTS[variant]
        self.encoder = timm.create_model(v.encoder, pretrained=False, img_size=PRETRAIN_SIZE, num_classes=0, weight_init="" if init else "skip")
        self.head = DPTHead(v.embed_dim, v.features, v.out_channels)

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """The class token's and the patches' position embeddings for a ``rows x cols`` grid: ``(1, 1 + rows*cols, C)``.

        Bicubic, corners not aligned, in float32, as the Hugging Face port; the stored 37 x 37 grid as is.
        """
        pos = self.encoder.pos_embed
        grid = math.isqrt(pos.shape[1] - 1)
        if (rows, cols) == (grid, grid):
            return pos
        patches = pos[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches.float(), size=(rows, cols), mode="bicubic", align_corners=False).to(pos.dtype)
        return torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)], dim=1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` -> the patch tokens after the variant's four blocks, normalised: each ``(B, H/14 * W/14, C)``."""
        b, _, h, w = x.shape
        tokens = self.encoder.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.encoder.cls_token.expand(b, -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(h // PATCH, w // PATCH)
        out = []
        layers = self.variant.layers
        for i, block in enumerate(self.encoder.blocks[: layers[-1] + 1]):
            tokens = block(tokens)
            if i in layers:
                out.append(self.encoder.norm(tokens)[:, 1:])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % PATCH or w % PATCH:
            raise ValueError(f"height and width must be multiples of {PATCH}, got {h}x{w}")
        return self.head(self.features(x), h // PATCH, w // PATCH)


class DepthAnythingV2(DepthBackend):
    """A Depth Anything V2 depth backend (frozen), weights converted from the Hugging Face port.

    ``predict``: ``(B, 3, h, w)`` RGB in ``[0, 1]`` at the working size -> ``(B, 1, h, w)`` relative
    inverse depth, larger = nearer (already nearness: no inversion).
    """

    def __init__(
        self,
        weights: str | None,
        variant: str = "small",
        how: str | None = None,
        resolution: int | None = PRETRAIN_SIZE,
        sha256: str | None = None,
        net: DepthAnythingNet | None = None,
    ):
        super().__init__(resolution)
        self.name = f"depth_anything_v2_{variant}"
        if net is None:
            how = how or f"make weights depth={self.name}"
            net = load_safetensors_into(DepthAnythingNet(variant, init=False), resolve_weights(weights, self.name, how, sha256))
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def with_random_weights(cls, variant: str = "small", **kwargs) -> DepthAnythingV2:
        """The published architecture with random weights: it costs the same, for timing where the weights are absent."""
        return cls(None, variant, net=DepthAnythingNet(variant), **kwargs)

    def working_size(self, h: int, w: int) -> tuple[int, int]:
        """The original's resize: the short side to ``resolution`` (up or down), each side a multiple of 14
        and at least ``resolution``; without a resolution, each side to the nearest multiple of 14."""
        if not self.resolution:
            return to_multiple(h, PATCH), to_multiple(w, PATCH)
        scale = self.resolution / min(h, w)
        return to_multiple(h * scale, self.resolution), to_multiple(w * scale, self.resolution)

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return self.net((image - self.mean) / self.std)


class DepthAnythingV2Small(DepthAnythingV2):
    """Depth Anything V2 Small (the Apache-2.0 one): :class:`DepthAnythingV2` with ``variant="small"``."""

    def __init__(self, weights: str | None, how: str | None = None, resolution: int | None = PRETRAIN_SIZE, sha256: str | None = None, net=None):
        super().__init__(weights, "small", how, resolution, sha256, net)

    @classmethod
    def with_random_weights(cls, **kwargs) -> DepthAnythingV2Small:
        return cls(None, net=DepthAnythingNet("small"), **kwargs)


def write_random_weights(path: Path, variant: str = "small", seed: int = 0) -> Path:
    """The converted layout of ``variant`` with random weights at ``path`` (safetensors): what a conversion with
    the real weights costs, for timing where they are absent (``make bench``)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    save_file(DepthAnythingNet(variant).state_dict(), str(path))
    return path
