"""Dense pseudo-labels from a stereo teacher (PSMNet, :mod:`s3d.models.psmnet`) for distillation.

The teacher sees both eyes, so its disparity is what a monocular student cannot find alone from a few
dozen scenes. Per pair it gives the disparity of both views (the right view's as the mirrored scene:
mirroring swaps the eyes and keeps ``d``) and keeps a pixel only where the two agree (left-right
consistency): occlusions, glass and the KITTI-tuned network's spikes fail it. Unknown pixels are NaN, as
the stereo-matching hints of :mod:`s3d.data.hints`, so both travel through the same crops and flips.

Labels are computed once and cached by the content of the two images, the teacher's weights and the
settings (``python -m s3d.data.teacher ROOT ... --cache DIR`` labels ahead of training, with progress).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from s3d.errors import S3DError
from s3d.io.atomic import atomic_output
from s3d.io.image import read_image
from s3d.io.weights import file_sha256

log = logging.getLogger(__name__)
LABEL_VERSION = 1  # bump when the label computation changes: old cache entries are then not used


@dataclass(frozen=True)
class LabelSettings:
    max_width: int = 640  # the teacher runs at most this wide (its cost grows with the pixels)
    min_size: int = 256  # and at least this high and wide (PSMNet's pyramid pools 64 px at quarter size)
    tolerance: float = 1.0  # px at the teacher's size: left and right disparities must agree this well


def teacher_size(h: int, w: int, settings: LabelSettings) -> tuple[int, int]:
    """The size the teacher runs at: at most ``max_width`` wide, at least ``min_size`` on both sides, aspect kept."""
    scale = min(1.0, settings.max_width / w)
    scale = max(scale, settings.min_size / h, settings.min_size / w)
    return max(settings.min_size, round(h * scale)), max(settings.min_size, round(w * scale))


def lr_consistent(d_here: torch.Tensor, d_there: torch.Tensor, sign: int, tolerance: float) -> torch.Tensor:
    """Where a view's disparity is confirmed by the other view's: ``(B, 1, H, W)`` x 2 -> bool ``(B, 1, H, W)``.

    ``sign=1``: ``d_here`` is the left view's (left pixel ``x`` sees right pixel ``x - d``); ``sign=-1``:
    the right view's (right ``x`` sees left ``x + d``). Pixels whose match falls outside the image are False.
    """
    w = d_here.shape[-1]
    x = torch.arange(w, device=d_here.device, dtype=d_here.dtype).expand_as(d_here)
    at = (x - sign * d_here).round()
    inside = (at >= 0) & (at <= w - 1)
    back = torch.gather(d_there, -1, at.clamp(0, w - 1).long())
    return inside & ((d_here - back).abs() <= tolerance)


def teacher_disparity(net: torch.nn.Module, left: torch.Tensor, right: torch.Tensor, settings: LabelSettings = LabelSettings()) -> torch.Tensor:
    """The teacher's dense left-view disparity in px of the input (no mask): ``(B, 3, H, W)`` x 2 -> ``(B, 1, H, W)``."""
    from s3d.models.psmnet import psmnet_disparity

    h, w = left.shape[-2:]
    small_left, small_right = at_teacher_size(left, right, settings)
    d = psmnet_disparity(net, small_left, small_right).float().cpu()
    return F.interpolate(d, size=(h, w), mode="bilinear", align_corners=False) * (w / small_left.shape[-1])


def at_teacher_size(left: torch.Tensor, right: torch.Tensor, settings: LabelSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Both eyes resized to :func:`teacher_size` (unchanged when already there). ``(B, 3, H, W)`` x 2."""
    h, w = left.shape[-2:]
    size = teacher_size(h, w, settings)
    if size == (h, w):
        return left, right
    return tuple(F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True) for x in (left, right))


def teacher_labels(
    net: torch.nn.Module, left: torch.Tensor, right: torch.Tensor, settings: LabelSettings = LabelSettings()
) -> tuple[torch.Tensor, torch.Tensor]:
    """``left, right (B, 3, H, W)`` in ``[0, 1]`` -> ``(label_left, label_right)`` ``(B, 1, H, W)``: the
    teacher's disparity of each view in px of the input, NaN where the views disagree."""
    from s3d.models.psmnet import psmnet_disparity

    h, w = left.shape[-2:]
    small_left, small_right = at_teacher_size(left, right, settings)
    d_left = psmnet_disparity(net, small_left, small_right).float().cpu()
    d_right = psmnet_disparity(net, small_right.flip(-1), small_left.flip(-1)).float().cpu().flip(-1)
    ok_left = lr_consistent(d_left, d_right, 1, settings.tolerance)
    ok_right = lr_consistent(d_right, d_left, -1, settings.tolerance)
    out = []
    for d, ok in ((d_left, ok_left), (d_right, ok_right)):
        d = torch.where(ok, d, torch.full_like(d, float("nan")))
        out.append(resize_labels(d, (h, w)))
    return out[0], out[1]


def resize_labels(d: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Disparity labels with NaN holes to another size: ``(B, 1, h, w) -> (B, 1, H, W)``, values scaled by
    ``W / w``. Nearest neighbour, so a hole never blends into a label (nor labels across a depth edge)."""
    if tuple(d.shape[-2:]) == tuple(size):
        return d
    return F.interpolate(d, size=size, mode="nearest-exact") * (size[1] / d.shape[-1])


def label_key(left: Path, right: Path, weights_sha256: str, settings: LabelSettings) -> str:
    parts = [file_sha256(left), file_sha256(right), weights_sha256, json.dumps(asdict(settings), sort_keys=True), str(LABEL_VERSION)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


class TeacherLabels:
    """Cached teacher labels of image files: ``labels(left, right) -> (label_left, label_right)`` ``(1, H, W)``
    at the images' own size; the teacher is loaded only when a label is missing from the cache."""

    def __init__(self, weights: str | Path, cache_dir: str | Path, settings: LabelSettings = LabelSettings(), device: str = "cpu"):
        self.weights, self.cache_dir, self.settings, self.device = Path(weights).expanduser(), Path(cache_dir).expanduser(), settings, device
        if not self.weights.is_file():
            from s3d.models.psmnet import HOW

            raise S3DError(self.weights, f"missing weights of the PSMNet stereo teacher; get them with: {HOW}")
        self.weights_sha256 = file_sha256(self.weights)
        self._net = None
        self.computed = self.reused = 0

    def net(self) -> torch.nn.Module:
        if self._net is None:
            from s3d.models.psmnet import load_psmnet

            self._net = load_psmnet(self.weights, self.device)
        return self._net

    def labels(self, left: Path, right: Path) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.cache_dir / f"{label_key(left, right, self.weights_sha256, self.settings)}.safetensors"
        if path.is_file():
            self.reused += 1
            state = load_file(str(path))
            return state["left"].float(), state["right"].float()
        l, r = read_image(left)[None], read_image(right)[None]
        if l.shape != r.shape:
            raise S3DError(left, f"eyes differ in size: {tuple(l.shape[1:])} and {tuple(r.shape[1:])}")
        label_left, label_right = teacher_labels(self.net(), l, r, self.settings)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, overwrite=True) as tmp:
            save_file(
                {"left": label_left[0].half().contiguous(), "right": label_right[0].half().contiguous()},
                str(tmp),
                metadata={"left": str(left), "right": str(right)},
            )
        self.computed += 1
        return label_left[0], label_right[0]


def main(argv: list[str] | None = None) -> int:
    """Label every pair under the given roots ahead of training (cached; a second run only reads)."""
    from s3d import cli
    from s3d.data.pair_files import find_pairs
    from s3d.models.psmnet import DEFAULT_WEIGHTS

    parser = argparse.ArgumentParser(prog="python -m s3d.data.teacher", description=main.__doc__)
    parser.add_argument("roots", nargs="+", help="folders of stereo pairs (s3d.data.pair_files.find_pairs layouts)")
    parser.add_argument("--cache", required=True, help="label cache folder (the training config's data.teacher.cache_dir)")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--exclude", nargs="*", default=[], help="pair names to leave out (the evaluation scenes)")
    parser.add_argument("--max-width", type=int, default=LabelSettings.max_width)
    args = parser.parse_args(argv)

    def run() -> None:
        teacher = TeacherLabels(args.weights, args.cache, LabelSettings(max_width=args.max_width))
        pairs = [p for root in args.roots for p in find_pairs(root) if p[0] not in set(args.exclude)]
        start = time.time()
        known = 0.0
        for i, (name, left, right) in enumerate(pairs, 1):
            label_left, _ = teacher.labels(left, right)
            known += float(torch.isfinite(label_left).float().mean())
            rate = i / max(time.time() - start, 1e-9)
            print(f"\r{i}/{len(pairs)} pairs, {rate:.2f}/s, ETA {(len(pairs) - i) / rate:.0f} s ({name})", end="", file=sys.stderr, flush=True)
        print(
            f"\n{len(pairs)} pairs: {teacher.computed} labelled, {teacher.reused} from the cache, "
            f"{100 * known / max(len(pairs), 1):.1f}% of left-view pixels confident, {time.time() - start:.0f} s",
            flush=True,
        )

    cli.run(run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
