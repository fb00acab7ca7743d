"""DenseDepth (Alhashim & Wonka 2018) in PyTorch: the article's frozen depth network.

A DenseNet-169 encoder, in torchvision's module layout, and an upsampling decoder with four skip
connections. Block sizes, growth rate and decoder width are read from the weights, so a small fixture
DenseNet loads through the same code as the real ``nyu.h5`` conversion (``s3d.depth.convert_densedepth``).

Pre- and post-processing follow the original: the input is RGB scaled to ``[0, 1]``; the network's
output ``y`` is ``max_depth / depth`` (the "DepthNorm" of the paper), so depth is ``max_depth / y``
clipped to ``[min_depth, max_depth]``, and nearness is its inverse. The output has half the input's
resolution.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torchvision.models.densenet import DenseNet as TorchvisionDenseNet

from s3d.depth.base import DepthBackend, resolve_weights
from s3d.errors import S3DError
from s3d.io.weights import load_safetensors_into

KERAS_BN_EPS = 1.001e-5  # Keras' DenseNet uses this epsilon in every BatchNormalization
LEAKY_SLOPE = 0.2


@dataclass(frozen=True)
class DenseDepthConfig:
    block_config: tuple[int, ...] = (6, 12, 32, 32)  # DenseNet-169
    growth_rate: int = 32
    num_init_features: int = 64
    bn_size: int = 4
    decoder_width: int = 832  # half the encoder's 1664 output channels
    bn_eps: float = KERAS_BN_EPS

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], bn_eps: float = KERAS_BN_EPS) -> DenseDepthConfig:
        """Read the architecture from tensor names and shapes (raises ``KeyError`` on a foreign file)."""
        growth = state["encoder.denseblock1.denselayer1.conv2.weight"].shape[0]
        blocks = count_dense_layers(lambda b, n: f"encoder.denseblock{b}.denselayer{n}.conv1.weight" in state)
        return cls(
            block_config=blocks,
            growth_rate=growth,
            num_init_features=state["encoder.conv0.weight"].shape[0],
            bn_size=state["encoder.denseblock1.denselayer1.conv1.weight"].shape[0] // growth,
            decoder_width=state["decoder.conv2.weight"].shape[0],
            bn_eps=bn_eps,
        )


def count_dense_layers(exists) -> tuple[int, ...]:
    """Layers per dense block, counted while ``exists(block, layer)`` (both from 1) says the layer is there."""
    blocks, b = [], 1
    while exists(b, 1):
        n = 1
        while exists(b, n + 1):
            n += 1
        blocks.append(n)
        b += 1
    return tuple(blocks)


def densenet_encoder(cfg: DenseDepthConfig) -> nn.Sequential:
    """torchvision's DenseNet ``features`` (conv0 ... norm5) with Keras' BatchNorm epsilon."""
    features = TorchvisionDenseNet(cfg.growth_rate, cfg.block_config, cfg.num_init_features, cfg.bn_size).features
    for m in features.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = cfg.bn_eps
    return features


class UpProject(nn.Module):
    """Upsample x2 (bilinear, corners aligned as Keras' ``resize_images(align_corners=True)``), concat the skip, two 3x3 convs."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.convA = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.convB = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        x = F.leaky_relu(self.convA(torch.cat((x, skip), dim=1)), LEAKY_SLOPE)
        return F.leaky_relu(self.convB(x), LEAKY_SLOPE)


class Decoder(nn.Module):
    def __init__(self, encoder_channels: int, skip_channels: tuple[int, int, int, int], width: int):
        super().__init__()
        self.conv2 = nn.Conv2d(encoder_channels, width, 1)
        c = width
        for i, skip in enumerate(skip_channels, start=1):
            setattr(self, f"up{i}", UpProject(c + skip, width // 2**i))
            c = width // 2**i
        self.conv3 = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, bottleneck: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv2(bottleneck)
        for i, skip in enumerate(skips, start=1):
            x = getattr(self, f"up{i}")(x, skip)
        return self.conv3(x)


class DenseDepthNet(nn.Module):
    """``(B, 3, H, W)`` RGB in ``[0, 1]`` -> ``(B, 1, H/2, W/2)`` DepthNorm output ``y = max_depth / depth``.

    ``H`` and ``W`` must be multiples of 32. Skips, as in the Keras model: ``conv1/relu`` (H/2),
    ``pool1`` (H/4), ``pool2_pool`` (H/8), ``pool3_pool`` (H/16).
    """

    def __init__(self, cfg: DenseDepthConfig = DenseDepthConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = densenet_encoder(cfg)
        c1 = cfg.num_init_features
        c2 = int((c1 + cfg.block_config[0] * cfg.growth_rate) * 0.5)
        c3 = int((c2 + cfg.block_config[1] * cfg.growth_rate) * 0.5)
        self.decoder = Decoder(self.encoder.norm5.num_features, (c3, c2, c1, c1), cfg.decoder_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = {}
        for name, layer in self.encoder.named_children():
            x = layer(x)
            if name in ("relu0", "pool0", "transition1", "transition2"):
                skips[name] = x
        x = F.relu(x)  # Keras' final 'relu' after 'bn' (torchvision applies it outside ``features``)
        return self.decoder(x, [skips["transition2"], skips["transition1"], skips["pool0"], skips["relu0"]])


def _bn_eps_from_metadata(path) -> float:
    """The BatchNorm epsilon the converter read from the Keras model config (Keras' default if absent)."""
    with safe_open(str(path), "pt") as f:
        meta = (f.metadata() or {}).get("s3d")
    return float(json.loads(meta)["config"]["bn_eps"]) if meta else KERAS_BN_EPS


class DenseDepth(DepthBackend):
    """The DenseDepth depth backend (frozen), weights converted from the authors' ``nyu.h5``."""

    name = "densedepth"

    def __init__(
        self,
        weights: str | None,
        how: str = "make weights",
        resolution: int | None = 480,
        min_depth: float = 10.0,
        max_depth: float = 1000.0,
        sha256: str | None = None,
        net: DenseDepthNet | None = None,
    ):
        super().__init__(resolution)
        if net is None:
            path = resolve_weights(weights, self.name, how, sha256)
            try:
                cfg = DenseDepthConfig.from_state_dict(load_file(str(path)), _bn_eps_from_metadata(path))
            except KeyError as err:
                raise S3DError(path, f"not DenseDepth weights: missing tensor {err}") from None
            except Exception as err:
                raise S3DError(path, f"not a readable safetensors file ({err})") from None
            net = load_safetensors_into(DenseDepthNet(cfg), path)
        self.net = net
        self.min_depth, self.max_depth = min_depth, max_depth

    @classmethod
    def with_random_weights(cls, **kwargs) -> DenseDepth:
        """The published architecture with random weights: it costs the same, for timing where ``nyu.h5`` is absent."""
        return cls(None, net=DenseDepthNet(DenseDepthConfig()), **kwargs)

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        depth = (self.max_depth / self.net(image)).clamp(self.min_depth, self.max_depth)
        return 1.0 / depth
