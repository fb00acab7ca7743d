"""The project's own trained model as a depth backend: its source-view disparity, normalised.

``weights/s3d_lite0.safetensors`` is the default model trained here (weights/MODEL_CARD.md). As a depth
backend it gives the conversion pipeline (DIBR with divergence and convergence) and the ``seed`` model
their depth input; ``convert.py checkpoint=weights/s3d_lite0.safetensors`` uses its own warp instead.
"""

from __future__ import annotations

import torch

from s3d.depth.base import DepthBackend, resolve_weights
from s3d.errors import S3DError
from s3d.io.weights import build_exported_model, read_metadata
from s3d.models.lite0 import Lite0WarpNet


class S3DLite0Depth(DepthBackend):
    name = "s3d_lite0"

    def __init__(self, weights: str | None, how: str = "it ships in the repo: git checkout weights/", resolution: int | None = 256, sha256: str | None = None):
        super().__init__(resolution)
        path = resolve_weights(weights, self.name, how, sha256)
        target = read_metadata(path)["model"].get("_target_")
        if target != f"{Lite0WarpNet.__module__}.{Lite0WarpNet.__name__}":
            raise S3DError(path, f"not an s3d Lite0 model: {target}")
        self.net: Lite0WarpNet = build_exported_model(path)[0]

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        # Source-view disparity is inverse depth up to scale: larger = nearer, as the interface wants.
        return self.net.features(image).source
