"""Stereo photo pairs as a LightningDataModule.

Each item is ``{"left": (3, h, w), "right": (3, h, w), "name": str}`` in ``[0, 1]``. Augmentation keeps
the stereo geometry valid: one crop for both eyes, one colour jitter for both, and a horizontal flip
that also swaps the eyes (the mirror image of a right eye is the left eye of the mirrored scene).
The train/val split is by pair (scene), never within one.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from s3d.data.hints import stereo_hints
from s3d.data.pair_files import find_pairs  # noqa: F401 (also this module's, for its users)
from s3d.data.teacher import LabelSettings, TeacherLabels, resize_labels
from s3d.errors import S3DError
from s3d.io.image import read_image


class StereoPairs(Dataset):
    """Random crops of stereo pairs (``train=True``) or centre crops (``train=False``).

    ``hints`` and ``teacher`` add per-pixel disparity maps of both views (px at the loaded size, NaN =
    unknown) that follow the crop and the flip: ``hint_left``/``hint_right`` (stereo matching,
    :mod:`s3d.data.hints`) and ``teacher_left``/``teacher_right`` (:class:`s3d.data.teacher.TeacherLabels`).
    """

    def __init__(
        self,
        pairs: list[tuple[str, Path, Path]],
        crop: tuple[int, int],
        train: bool,
        samples_per_pair: int = 1,
        jitter: float = 0.1,
        resize_width: int | None = None,
        hints: tuple[int, int] | None = None,
        teacher=None,
    ):
        # resize_width: every pair at one width, so disparities (px) keep one scale relative to the frame
        self.images = [(name, read_image(l, resize_width), read_image(r, resize_width)) for name, l, r in pairs]
        for name, l, r in self.images:
            if l.shape != r.shape:
                raise S3DError(name, f"eyes differ in size: {tuple(l.shape)} and {tuple(r.shape)}")
            if l.shape[1] < crop[0] or l.shape[2] < crop[1]:
                raise S3DError(name, f"smaller than the crop {crop}: {tuple(l.shape[1:])}")
        self.maps: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        if hints:  # (min, max) disparity in px at the loaded size -> stereo-matched disparities of both views
            self.maps["hint"] = [stereo_hints(l, r, *hints) for _, l, r in self.images]
        if teacher is not None:
            labels = [teacher.labels(lp, rp) for _, lp, rp in pairs]
            self.maps["teacher"] = [tuple(resize_labels(m[None], l.shape[-2:])[0] for m in lr) for lr, (_, l, _) in zip(labels, self.images)]
        self.crop, self.train, self.jitter = tuple(crop), train, jitter
        self.samples_per_pair = samples_per_pair if train else 1

    def __len__(self) -> int:
        return len(self.images) * self.samples_per_pair

    def __getitem__(self, i: int) -> dict:
        k = i % len(self.images)
        name, left, right = self.images[k]
        ch, cw = self.crop
        h, w = left.shape[1:]
        if self.train:
            y, x = random.randint(0, h - ch), random.randint(0, w - cw)
        else:
            y, x = (h - ch) // 2, (w - cw) // 2
        views = [(left, right)] + [self.maps[m][k] for m in self.maps]
        views = [tuple(v[:, y : y + ch, x : x + cw] for v in lr) for lr in views]
        if self.train and random.random() < 0.5:
            # the mirror image of the right eye is the left eye of the mirrored scene; d keeps its sign
            views = [(r.flip(-1), l.flip(-1)) for l, r in views]
        left, right = views[0]
        if self.train:
            gain = 1 + (torch.rand(3, 1, 1) * 2 - 1) * self.jitter
            left, right = (left * gain).clamp(0, 1), (right * gain).clamp(0, 1)
        item = {"left": left.contiguous(), "right": right.contiguous(), "name": name}
        for m, (l, r) in zip(self.maps, views[1:]):
            item[f"{m}_left"], item[f"{m}_right"] = l.contiguous(), r.contiguous()
        return item


class StereoPairsDataModule(pl.LightningDataModule):
    def __init__(
        self,
        roots: list[str],
        crop: tuple[int, int] = (128, 192),
        batch_size: int = 4,
        val_pairs: int = 1,
        samples_per_pair: int = 8,
        num_workers: int = 0,
        exclude: tuple[str, ...] = (),
        val_names: tuple[str, ...] = (),
        resize_width: int | None = None,
        hints: tuple[int, int] | None = None,
        teacher: dict | None = None,
    ):
        super().__init__()
        self.roots, self.crop, self.batch_size = list(roots), tuple(crop), batch_size
        self.val_pairs, self.samples_per_pair, self.num_workers, self.exclude = val_pairs, samples_per_pair, num_workers, set(exclude)
        self.val_names, self.resize_width = set(val_names), resize_width
        self.hints = tuple(hints) if hints else None
        self.teacher = dict(teacher) if teacher else None  # TeacherLabels arguments: weights, cache_dir, max_width

    def split(self, pairs: list) -> tuple[list, list]:
        """``val_names`` validate if given, else the first ``val_pairs`` by name; never one scene on both sides."""
        if self.val_names:
            return [p for p in pairs if p[0] in self.val_names], [p for p in pairs if p[0] not in self.val_names]
        return pairs[: self.val_pairs], pairs[self.val_pairs :]

    def setup(self, stage: str | None = None) -> None:
        pairs = [p for root in self.roots for p in find_pairs(root) if p[0] not in self.exclude]
        val, train = self.split(pairs)
        if not val or not train:
            raise S3DError(", ".join(self.roots), f"found {len(pairs)} stereo pairs, need more than val_pairs={self.val_pairs}")
        self.train_set = StereoPairs(
            train, self.crop, True, self.samples_per_pair, resize_width=self.resize_width, hints=self.hints, teacher=self.teacher_labels()
        )
        self.val_set = StereoPairs(val, self.crop, False, resize_width=self.resize_width)

    def teacher_labels(self):
        if not self.teacher:
            return None
        settings = {k: v for k, v in self.teacher.items() if k in ("max_width", "min_size", "tolerance")}
        return TeacherLabels(self.teacher["weights"], self.teacher["cache_dir"], LabelSettings(**settings))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)
