"""Training patches of the learned fill (:mod:`s3d.models.fill`), built once into one safetensors file.

Two kinds of sample, each cut into square patches around its holes:

* ``real``: a real left eye warped by the stereo teacher's disparity to the right (``fill=smooth``), the real
  right eye the truth: exactly what the evaluation measures, lighting differences and teacher errors included;
* ``picture``: any picture forward to a left eye and back (:func:`s3d.data.holes.warp_holes`), the picture the
  truth: holes where conversion makes them, from the teacher's disparity of a stereo pair (the left eye, mirrored
  so that it is a right eye) or from the bundled depth model's nearness on 2D frames.

Only the training split of ../shared/data goes in (its README): never the evaluation scenes nor
``kitti2012_eval_only``. ``python -m s3d.data.fill_patches OUT.safetensors`` builds the file; it records, per patch,
its source name (the validation split is by source) and kind.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from s3d.data.holes import warp_holes
from s3d.data.pair_files import find_pairs
from s3d.errors import S3DError
from s3d.io.atomic import atomic_output
from s3d.io.image import read_image
from s3d.models.fill import fill_inputs
from s3d.stereo.warp import synthesize_view

log = logging.getLogger(__name__)
PATCH = 96  # px square: the holes and ~2x the network's receptive field around them
PER_SAMPLE = 48  # patches cut from one sample at most (they may overlap: different crops of its holes)
MAX_WIDTH = 960  # samples are made at most this wide (holes as wide as at conversion sizes, affordable on a CPU)


@dataclass(frozen=True)
class FillPatch:
    """``warped (3, P, P)``, ``target (3, P, P)`` uint8; ``holes (1, P, P)`` bool; ``disparity (1, P, P)`` px, the
    target view's (:func:`s3d.models.fill.fill_inputs`)."""

    warped: torch.Tensor
    holes: torch.Tensor
    disparity: torch.Tensor
    target: torch.Tensor


def _bytes(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def cut_patches(
    warped: torch.Tensor, holes: torch.Tensor, disparity: torch.Tensor, target: torch.Tensor, count: int, generator: torch.Generator, size: int = PATCH
) -> list[FillPatch]:
    """Up to ``count`` ``size`` px patches centred on random hole pixels (none if there are no holes), from one
    sample: ``warped, target (1, 3, H, W)`` in [0, 1], ``holes (1, 1, H, W)`` bool, ``disparity (1, 1, H, W)``."""
    h, w = warped.shape[-2:]
    if h < size or w < size:
        return []
    ys, xs = holes[0, 0].nonzero(as_tuple=True)
    if len(ys) == 0:
        return []
    picks = torch.randperm(len(ys), generator=generator)[:count]
    out = []
    for i in picks.tolist():
        y = min(max(int(ys[i]) - size // 2, 0), h - size)
        x = min(max(int(xs[i]) - size // 2, 0), w - size)
        warped_cut, holes_cut, disparity_cut, target_cut = (t[0, :, y : y + size, x : x + size] for t in (warped, holes, disparity, target))
        out.append(FillPatch(_bytes(warped_cut), holes_cut.clone(), disparity_cut.half(), _bytes(target_cut)))
    return out


def real_sample(left: torch.Tensor, right: torch.Tensor, disparity: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The conversion's right eye from the real left one and the teacher's left-view ``disparity``, its holes and
    target-view disparity, and the real right eye: ``(warped, holes, disparity, target)``."""
    warped = synthesize_view(left, disparity, direction=1, fill="smooth")
    holes, target_disparity = fill_inputs(disparity, 1)
    return warped, holes, target_disparity, right


def picture_sample(picture: torch.Tensor, disparity: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A picture taken as a right eye with its own ``disparity`` (px), forward to a left eye and back:
    ``(warped, holes, disparity, target)`` as :func:`real_sample`."""
    s = warp_holes(picture, disparity, fill="smooth")
    holes, target_disparity = fill_inputs(s.disparity, 1)
    return s.warped, holes, target_disparity, s.target


def at_most(x: torch.Tensor, width: int) -> torch.Tensor:
    """``(B, C, H, W)`` resized (antialiased) to at most ``width`` wide."""
    h, w = x.shape[-2:]
    if w <= width:
        return x
    return F.interpolate(x, size=(round(h * width / w), width), mode="bilinear", align_corners=False, antialias=True)


def stereo_samples(pairs: Sequence[tuple[str, Path, Path]], teacher, max_width: int = MAX_WIDTH) -> Iterator[tuple[str, str, tuple[torch.Tensor, ...]]]:
    """``(source name, kind, sample)`` of each stereo pair: the real warp and the mirrored left eye there and back."""
    from s3d.data.teacher import LabelSettings, teacher_disparity

    for name, lp, rp in pairs:
        left, right = at_most(read_image(lp)[None], max_width), at_most(read_image(rp)[None], max_width)
        if left.shape != right.shape:
            log.warning("%s: eyes differ in size, left out", lp)
            continue
        with torch.inference_mode():
            d = teacher_disparity(teacher, left, right, LabelSettings()).clamp(min=0)
            yield name, "real", real_sample(left, right, d)
            # mirrored, the left eye is the right eye of the mirrored scene, with the same disparity
            yield name, "picture", picture_sample(left.flip(-1), d.flip(-1))


def frame_samples(frames: Sequence[tuple[str, torch.Tensor]], depth, divergence: float) -> Iterator[tuple[str, str, tuple[torch.Tensor, ...]]]:
    """``(source name, "picture", sample)`` of 2D frames ``(1, 3, H, W)`` with the depth backend's nearness,
    ``divergence`` % of the width between the farthest and the nearest point (all in front of the screen)."""
    for name, frame in frames:
        with torch.inference_mode():
            d = depth(frame) * (divergence / 100 * frame.shape[-1])
            yield name, "picture", picture_sample(frame, d)


def write_patches(samples: Iterator[tuple[str, str, tuple[torch.Tensor, ...]]], out: Path, per_sample: int = PER_SAMPLE, seed: int = 0) -> int:
    """Cut every sample into patches and write them, with their sources and kinds, to ``out`` (atomically)."""
    g = torch.Generator().manual_seed(seed)
    patches, names, kinds = [], [], []
    for name, kind, sample in samples:
        cut = cut_patches(*sample, per_sample, g)
        patches += cut
        names += [name] * len(cut)
        kinds += [kind] * len(cut)
        log.info("%s (%s): %d patches, holes %.2f %%", name, kind, len(cut), 100 * float(sample[1].float().mean()))
    if not patches:
        raise S3DError(out, "no sample had holes: nothing to write")
    tensors = {field: torch.stack([getattr(p, field) for p in patches]).contiguous() for field in ("warped", "holes", "disparity", "target")}
    with atomic_output(out, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata={"names": json.dumps(names), "kinds": json.dumps(kinds)})
    return len(patches)


class FillPatches(Dataset):
    """Items ``{"warped", "target": (3, P, P) float [0, 1], "holes": (1, P, P) bool, "disparity": (1, P, P) float}``;
    ``train``: a random vertical flip (a horizontal one would put the holes on the wrong side)."""

    def __init__(self, tensors: dict[str, torch.Tensor], index: list[int], train: bool):
        self.tensors, self.index, self.train = tensors, index, train

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = self.index[i]
        item = {k: v[j] for k, v in self.tensors.items()}
        item = {
            "warped": item["warped"].float() / 255,
            "target": item["target"].float() / 255,
            "holes": item["holes"].bool(),
            "disparity": item["disparity"].float(),
        }
        if self.train and torch.rand(()) < 0.5:
            item = {k: v.flip(-2) for k, v in item.items()}
        return item


class FillPatchesDataModule(pl.LightningDataModule):
    """The patches file of :func:`write_patches`; the sources named in ``val_names`` validate (split by source)."""

    def __init__(self, path: str, val_names: Sequence[str], batch_size: int = 16, num_workers: int = 0):
        super().__init__()
        self.path, self.val_names, self.batch_size, self.num_workers = Path(path), set(val_names), batch_size, num_workers

    def setup(self, stage: str | None = None) -> None:
        if not self.path.is_file():
            raise S3DError(self.path, "no fill patches file (python -m s3d.data.fill_patches PATH builds it: scripts/train_fill.sh)")
        tensors = load_file(str(self.path))
        with safe_open(str(self.path), "pt") as f:
            names = json.loads(f.metadata()["names"])
        val = [i for i, n in enumerate(names) if n in self.val_names]
        train = [i for i, n in enumerate(names) if n not in self.val_names]
        if not val or not train:
            raise S3DError(self.path, f"{len(names)} patches: none left for {'validation' if not val else 'training'} with val_names={sorted(self.val_names)}")
        self.train_set, self.val_set = FillPatches(tensors, train, True), FillPatches(tensors, val, False)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)


def training_pairs(roots: Sequence[Path], exclude: Sequence[str]) -> list[tuple[str, Path, Path]]:
    return [p for root in roots for p in find_pairs(root) if p[0] not in set(exclude)]


def main(argv: list[str] | None = None) -> int:
    from s3d.config import PROJECT_ROOT, compose
    from s3d.data.sources import build_training_views
    from s3d.depth import build_depth
    from s3d.io.video import read_frames_at
    from s3d.models.psmnet import load_psmnet

    parser = argparse.ArgumentParser(prog="python -m s3d.data.fill_patches", description="Build the training patches of the learned fill.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--shared", type=Path, default=PROJECT_ROOT.parent / "shared" / "data")
    parser.add_argument("--views", type=Path, default=PROJECT_ROOT / "outputs" / "fill_views", help="where the stereo sources' views are written")
    parser.add_argument("--every", type=int, default=60, help="every N-th frame of the stereo videos")
    parser.add_argument("--yaw-step", type=float, default=90.0, help="degrees between the views of a 360 photo or frame")
    parser.add_argument("--frames", type=int, default=16, help="2D frames of the Blender clip (CC BY 3.0) with the bundled depth")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    split = compose("train", ["data=distill"]).data
    # the Pillow MPO pairs come from a converged camera that align_pair cannot align (sugarshack: 8 matches,
    # disparities -93 to +70 px after it): the teacher's disparity, hence the truth of their holes, would be wrong
    roots = [Path(r) for r in split.roots if Path(r).name != "mpo_pillow"]
    roots += build_training_views(args.shared, args.views, every=args.every, yaws=tuple(float(y) for y in torch.arange(0, 360, args.yaw_step).tolist()))
    pairs = training_pairs(roots, split.exclude)
    teacher = load_psmnet(PROJECT_ROOT / "weights" / "psmnet_kitti2015.safetensors")
    clip = args.shared / "video_2d" / "blender_open_movies" / "big_buck_bunny_0_30s_720p.webm"
    indices = [round(i * 719 / max(args.frames - 1, 1)) for i in range(args.frames)]
    frames = [(f"bbb_{i:03d}", torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255) for i, f in zip(indices, read_frames_at(clip, indices))]
    depth = build_depth(compose("convert", ["depth=s3d_lite0"]).depth, torch.device("cpu"))

    def samples():
        yield from stereo_samples(pairs, teacher)
        for i, (name, frame) in enumerate(frames):  # 2 to 5 % of the width: the range users pick
            yield from frame_samples([(name, frame)], depth, 2.0 + 3.0 * i / max(len(frames) - 1, 1))

    n = write_patches(samples(), args.out)
    print(f"{n} patches from {len(pairs)} stereo pairs and {len(frames)} frames in {time.perf_counter() - t:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
