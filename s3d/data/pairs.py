"""Stereo photo pairs as a LightningDataModule.

Each item is ``{"left": (3, h, w), "right": (3, h, w), "name": str}`` in ``[0, 1]``. Augmentation keeps
the stereo geometry valid: one crop for both eyes, one colour jitter for both, and a horizontal flip
that also swaps the eyes (the mirror image of a right eye is the left eye of the mirrored scene).
The train/val split is by pair (scene), never within one.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from s3d.errors import S3DError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
PAIR_NAMES = (("left", "right"), ("im0", "im1"))


def find_pairs(root: str | Path) -> list[tuple[str, Path, Path]]:
    """``(name, left, right)`` for every pair under ``root`` in either layout, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise S3DError(root, "no such folder of stereo pairs")
    pairs = []
    if (root / "image_0").is_dir() and (root / "image_1").is_dir():
        for left in sorted((root / "image_0").iterdir()):
            right = root / "image_1" / left.name
            if left.suffix.lower() in IMAGE_SUFFIXES and right.exists():
                pairs.append((left.stem, left, right))
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for a, b in PAIR_NAMES:
            lefts = [p for p in folder.glob(f"{a}.*") if p.suffix.lower() in IMAGE_SUFFIXES]
            rights = [p for p in folder.glob(f"{b}.*") if p.suffix.lower() in IMAGE_SUFFIXES]
            if lefts and rights:
                pairs.append((folder.name, lefts[0], rights[0]))
                break
    return pairs


def _load(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


class StereoPairs(Dataset):
    """Random crops of stereo pairs (``train=True``) or centre crops (``train=False``)."""

    def __init__(self, pairs: list[tuple[str, Path, Path]], crop: tuple[int, int], train: bool, samples_per_pair: int = 1, jitter: float = 0.1):
        self.images = [(name, _load(l), _load(r)) for name, l, r in pairs]
        for name, l, r in self.images:
            if l.shape != r.shape:
                raise S3DError(name, f"eyes differ in size: {tuple(l.shape)} and {tuple(r.shape)}")
            if l.shape[1] < crop[0] or l.shape[2] < crop[1]:
                raise S3DError(name, f"smaller than the crop {crop}: {tuple(l.shape[1:])}")
        self.crop, self.train, self.jitter = tuple(crop), train, jitter
        self.samples_per_pair = samples_per_pair if train else 1

    def __len__(self) -> int:
        return len(self.images) * self.samples_per_pair

    def __getitem__(self, i: int) -> dict:
        name, left, right = self.images[i % len(self.images)]
        ch, cw = self.crop
        h, w = left.shape[1:]
        if self.train:
            y, x = random.randint(0, h - ch), random.randint(0, w - cw)
        else:
            y, x = (h - ch) // 2, (w - cw) // 2
        left, right = left[:, y : y + ch, x : x + cw], right[:, y : y + ch, x : x + cw]
        if self.train:
            if random.random() < 0.5:
                left, right = right.flip(-1), left.flip(-1)
            gain = 1 + (torch.rand(3, 1, 1) * 2 - 1) * self.jitter
            left, right = (left * gain).clamp(0, 1), (right * gain).clamp(0, 1)
        return {"left": left.contiguous(), "right": right.contiguous(), "name": name}


class StereoPairsDataModule(pl.LightningDataModule):
    def __init__(self, roots: list[str], crop: tuple[int, int] = (128, 192), batch_size: int = 4, val_pairs: int = 1, samples_per_pair: int = 8, num_workers: int = 0, exclude: tuple[str, ...] = ()):
        super().__init__()
        self.roots, self.crop, self.batch_size = list(roots), tuple(crop), batch_size
        self.val_pairs, self.samples_per_pair, self.num_workers, self.exclude = val_pairs, samples_per_pair, num_workers, set(exclude)

    def setup(self, stage: str | None = None) -> None:
        pairs = [p for root in self.roots for p in find_pairs(root) if p[0] not in self.exclude]
        if len(pairs) <= self.val_pairs:
            raise S3DError(", ".join(self.roots), f"found {len(pairs)} stereo pairs, need more than val_pairs={self.val_pairs}")
        val, train = pairs[: self.val_pairs], pairs[self.val_pairs :]
        self.train_set = StereoPairs(train, self.crop, True, self.samples_per_pair)
        self.val_set = StereoPairs(val, self.crop, False)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)
