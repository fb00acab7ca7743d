"""The default model: a warp model on an ImageNet-pretrained EfficientNet-Lite0 encoder (monodepth style).

From the left eye alone it predicts two disparity maps (conventions in :mod:`s3d.stereo`): one in the
left (source) view, which serves as the depth of the conversion pipeline, and one in the right (target)
view, with which the left eye is warped into the right; an occlusion mask and an inpainting head fill
what the left eye cannot show. Training sees both eyes: each disparity must rebuild the other eye
(``photometric`` loss), as in monodepth. Disparities are fractions of the width, bounded by
``max_disparity``, so they carry over between the network's working size and the full frame.

The network runs at a reduced working size; the warp runs at full resolution (:meth:`render`), so the
generated eye is as sharp as the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from s3d.models.common import ViewModel, ViewPrediction, coord_channels, stride_size
from s3d.stereo import backward_warp

ENCODER = "tf_efficientnet_lite0"  # TensorFlow padding; inputs scaled to [-1, 1]


class UpBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin + cskip + 2, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, (3, 5), padding=(1, 2)),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat((x, skip, coord_channels(skip)), dim=1))


@dataclass
class Lite0Features:
    """The network's raw outputs at the size it ran at; disparities as fractions of the width."""

    source: torch.Tensor  # (B, 1, h, w) disparity in the input view
    target: torch.Tensor  # (B, 1, h, w) disparity in the generated view
    occlusion: torch.Tensor  # (B, 1, h, w)
    inpaint: torch.Tensor  # (B, 3, h, w)

    def resized(self, h: int, w: int) -> Lite0Features:
        if self.source.shape[-2:] == (h, w):
            return self
        up = lambda t: F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)  # noqa: E731
        return Lite0Features(up(self.source), up(self.target), up(self.occlusion), up(self.inpaint))


class Lite0WarpNet(ViewModel):
    """``image (B, 3, H, W)`` -> disparities (source and target view, px), occlusion, inpaint, pred."""

    use_depth = False  # its own depth: the training loop need not run a depth backend for it

    def __init__(
        self,
        decoder: tuple[int, ...] = (96, 64, 32, 24),
        max_disparity: float = 0.15,
        direction: int = 1,
        encoder_weights: str | None = None,
        freeze_encoder: bool = False,
    ):
        super().__init__()
        self.encoder = timm.create_model(ENCODER, pretrained=False, features_only=True)
        if encoder_weights:  # ImageNet start (s3d.models.convert_lite0); the classifier head is not used
            state = load_file(encoder_weights)
            self.encoder.load_state_dict({k: v for k, v in state.items() if k in self.encoder.state_dict()})
        chans = self.encoder.feature_info.channels()  # strides 2, 4, 8, 16, 32
        c = chans[-1]
        blocks = []
        for skip, out in zip(reversed(chans[:-1]), decoder):
            blocks.append(UpBlock(c, skip, out))
            c = out
        self.up = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c + 3, 2 + 1 + 3, 3, padding=1)  # 2 disparities, occlusion, inpaint RGB
        self.max_disparity, self.direction = max_disparity, direction
        # Frozen: the ImageNet features (and their BatchNorm statistics) stay as they are and only the
        # decoder learns, so a few dozen real scenes cannot overwrite what a million images taught.
        self.freeze_encoder = freeze_encoder
        self.encoder.requires_grad_(not freeze_encoder)

    def train(self, mode: bool = True) -> Lite0WarpNet:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def features(self, image: torch.Tensor) -> Lite0Features:
        """The network at the input's size: disparities as fractions of the width in ``[-max, max]``."""
        feats = self.encoder(image * 2 - 1)
        x = feats[-1]
        for block, skip in zip(self.up, reversed(feats[:-1])):
            x = block(x, skip)
        x = F.interpolate(x, size=image.shape[-2:], mode="bilinear", align_corners=False)
        y = self.head(torch.cat((x, image), dim=1))
        disp = torch.tanh(y[:, :2]) * self.max_disparity
        return Lite0Features(disp[:, :1], disp[:, 1:2], torch.sigmoid(y[:, 2:3] - 2.0), torch.sigmoid(y[:, 3:6]))

    def render(self, image: torch.Tensor, f: Lite0Features) -> ViewPrediction:
        """Warp the full-resolution ``image`` with network outputs ``f`` (any resolution)."""
        h, w = image.shape[-2:]
        up = f.resized(h, w)
        target_px = up.target * w
        warped = backward_warp(image, target_px, self.direction)
        pred = warped * (1 - up.occlusion) + up.inpaint * up.occlusion
        return ViewPrediction(pred, disparity=target_px, source_disparity=up.source * w, occlusion=up.occlusion, warped=warped)

    def at_width(self, image: torch.Tensor, depth=None, work_width: int = 320) -> ViewPrediction:
        """The network at ``work_width``, the warp of the full-resolution ``image`` (it stays sharp)."""
        return self(image, work_width=work_width)

    def forward(self, image: torch.Tensor, nearness: torch.Tensor | None = None, work_width: int | None = None) -> ViewPrediction:
        """``nearness`` is ignored (this model is its own depth). ``work_width``: run the network smaller."""
        x = image
        if work_width and image.shape[-1] != work_width:
            h, w = image.shape[-2:]
            size = stride_size(h * work_width / w, work_width)
            x = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
        return self.render(image, self.features(x))
