"""A tiny depth network **with random weights, for tests only**: its output is not depth.

It exercises the whole pipeline (shapes, batching, devices, the weights lookup) in milliseconds.
Without a weights file it is initialised from ``seed``; with one it loads it like a real backend.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from s3d.depth.base import DepthBackend, resolve_weights
from s3d.io.weights import load_safetensors_into


class TinyRandomDepth(DepthBackend):
    """``(B, 3, H, W) -> (B, 1, H/4, W/4)`` raw output of three random convolutions."""

    name = "tiny_random"

    def __init__(self, weights: str | None = None, seed: int = 0, resolution: int | None = 128, how: str = ""):
        super().__init__(resolution)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 1, 3, padding=1),
        )
        torch.random.set_rng_state(generator_state)
        if weights is not None:
            load_safetensors_into(self, resolve_weights(weights, self.name, how))

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(image * 2 - 1))


def save_random_weights(path: str, seed: int = 0) -> None:
    """Write this backend's seeded random weights as safetensors (a fixture for the weights lookup)."""
    from safetensors.torch import save_file

    save_file(TinyRandomDepth(seed=seed).state_dict(), str(path))
