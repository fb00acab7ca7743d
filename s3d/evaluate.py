"""View-quality evaluation on real stereo pairs: from each left eye predict the right eye and compare.

Per pair and on average: PSNR, SSIM, MAE on 0-255 (as Deep3D reports), a sharpness ratio (gradient
energy of the generated eye over the real eye's: blur lowers it, warping artefacts raise it) and, where
ground-truth disparity exists, the scale-free agreement of the predicted source-view disparity with it
(Spearman rank correlation; abs-rel after median scaling). Baselines always run on the same pairs:
``identity`` (copy the left eye) and ``shift`` (the best single horizontal shift, chosen per pair against
the real right eye: an oracle). A model that predicts a source-view disparity is also scored as
``<name>_dibr``: its disparity through the conversion pipeline's warp and background fill
(:func:`s3d.stereo.synthesize_view`) instead of its own warp and inpainting.

Depth on pairs without ground truth (``<name>_fit``): the model's nearness through the conversion path
(``synthesize_view``) with the two knobs a user has, 3D strength and screen plane (disparity
``a * nearness + b`` px, ``a >= 0``), fitted per pair against the real eye: the single-shift oracle's
privilege plus one parameter. Beside it, fitted the same way: ``yprior`` (nearness = row / height,
"lower is nearer") and ``teacher`` (the PSMNet stereo network's disparity from both eyes: the upper
reference, :mod:`s3d.models.psmnet`). ``fit`` in the result: each one's mean PSNR gain over ``shift``
and how often a model beats ``yprior``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image

from s3d.config import compose
from s3d.data.pairs import find_pairs
from s3d.depth import accelerate, build_depth
from s3d.depth.s3d_lite0 import S3DLite0Depth
from s3d.errors import S3DError
from s3d.export import load_fill_net, load_model
from s3d.io.atomic import atomic_output
from s3d.io.image import read_image, to_uint8
from s3d.losses import ssim
from s3d.models.common import ViewModel
from s3d.models.fill import LEARNED
from s3d.models.lite0 import Lite0WarpNet
from s3d.pipeline import render_view_uint8
from s3d.stereo import synthesize_view
from s3d.stereo.warp import forward_disparity

log = logging.getLogger(__name__)
METRICS = ("psnr", "ssim", "mae", "sharpness", "spearman", "absrel", "psnr_holes", "psnr_band", "siou", "streaks", "holes")
BAND = 4  # px either side of a disocclusion along the row: the pixels beside the holes a fill also touches
FIT_WIDTH = 320  # the knobs are searched at this width (the oracle's fit, not the reported image), then applied at full size


def load_rgb(path: Path) -> torch.Tensor:
    """``-> (1, 3, H, W)`` in ``[0, 1]``, EXIF orientation applied."""
    return read_image(path)[None]


def load_gt_disparity(folder: Path, left: Path) -> np.ndarray | None:
    """Ground-truth left-view disparity in px with NaN where unknown, from the files ../shared/data uses."""
    for p in sorted(folder.iterdir()):
        if p.name == "true_disp.png" or p.stem.endswith("GT"):
            d = np.array(Image.open(p).convert("L")).astype(np.float32)
            return np.where(d > 0, d, np.nan)
        if p.suffix == ".npz" and "disp" in p.stem:
            d = np.load(p)["arr_0"].astype(np.float32)
            return np.where(np.isfinite(d) & (d > 0), d, np.nan)
    return None


def gradient_energy(x: torch.Tensor) -> float:
    g = x.mean(1, keepdim=True)
    return float(((g[..., :, 1:] - g[..., :, :-1]) ** 2).mean() + ((g[..., 1:, :] - g[..., :-1, :]) ** 2).mean())


def image_metrics(pred: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    pred = pred.clamp(0, 1)
    return {
        "psnr": float(kornia.metrics.psnr(pred, real, 1.0)),
        "ssim": float(ssim(pred, real)),
        "mae": float((pred - real).abs().mean() * 255),
        "sharpness": gradient_energy(pred) / max(gradient_energy(real), 1e-12),
    }


def disocclusions(disparity: torch.Tensor, band: int = BAND) -> tuple[torch.Tensor, torch.Tensor]:
    """The right eye's pixels no left-eye pixel lands on when warped by ``disparity`` (the left view's, px), and
    the valid pixels within ``band`` px of them along the row: ``(B, 1, H, W) -> (holes, band)``, both bool."""
    _, valid = forward_disparity(disparity, 1)
    holes = ~valid
    near = F.max_pool2d(holes.float(), (1, 2 * band + 1), stride=1, padding=(0, band)) > 0
    return holes, near & valid


def masked_psnr(pred: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB, peak 1) over the pixels of ``mask (B, 1, H, W)`` only; NaN for an empty mask."""
    if not bool(mask.any()):
        return float("nan")
    mse = ((pred.clamp(0, 1) - real) ** 2).mean(1, keepdim=True)[mask].mean()
    return float(10 * torch.log10(1 / mse.clamp(min=1e-10)))


def siou(pred: torch.Tensor, real: torch.Tensor, left: torch.Tensor, levels: float = 5.0) -> float:
    """Mono2Stereo's stereo IoU (CVPR 2025): 0.75 x IoU of the Canny edges of the predicted and the real eye +
    0.25 x IoU of the pixels that differ from the left eye by more than ``levels`` (of 255) in any channel.
    Canny: kornia's, on grey [0, 1] images, thresholds 0.1 / 0.2. ``(1, 3, H, W)`` x 3 -> a number."""

    def iou(a: torch.Tensor, b: torch.Tensor) -> float:
        union = (a | b).sum()
        return float((a & b).sum() / union) if union else 1.0

    edges = [kornia.filters.canny(kornia.color.rgb_to_grayscale(x.clamp(0, 1)))[1] > 0 for x in (pred, real)]
    changed = [((x.clamp(0, 1) - left).abs() * 255 > levels).any(1) for x in (pred, real)]
    return 0.75 * iou(*edges) + 0.25 * iou(*changed)


def streaks(pred: torch.Tensor, real: torch.Tensor, holes: torch.Tensor) -> float:
    """How much more a fill changes from row to row inside the holes than the real eye does there: the mean
    |difference| between vertically adjacent hole pixels, predicted over real (1: as calm as the truth; per-row
    fills that shatter into streaks score well above). ``(1, 3, H, W)`` x 2, ``holes (1, 1, H, W)`` -> a number, NaN
    without such pixels."""
    both = (holes[..., 1:, :] & holes[..., :-1, :])[:, 0]
    if not bool(both.any()):
        return float("nan")
    change = lambda x: (x[..., 1:, :] - x[..., :-1, :]).abs().mean(1)[both].mean()  # noqa: E731
    return float(change(pred.clamp(0, 1)) / change(real).clamp(min=1e-6))


def fill_metrics(pred: torch.Tensor, real: torch.Tensor, left: torch.Tensor, disparity: torch.Tensor) -> dict[str, float]:
    """A rendered right eye against the real one, given the disparity that rendered it: the whole eye
    (:func:`image_metrics`), the disoccluded pixels and the band beside them (PSNR), SIoU, :func:`streaks` and the
    holes' share."""
    holes, band = disocclusions(disparity)
    m = image_metrics(pred, real)
    m.update(
        psnr_holes=masked_psnr(pred, real, holes), psnr_band=masked_psnr(pred, real, band), siou=siou(pred, real, left), streaks=streaks(pred, real, holes)
    )
    m["holes"] = float(holes.float().mean())
    return m


def _ranks(x: np.ndarray) -> np.ndarray:
    order = x.argsort(kind="stable")
    r = np.empty_like(order, dtype=np.float64)
    r[order] = np.arange(len(x))
    return r


def disparity_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Scale-free agreement on pixels with ground truth (pred resized to gt's size beforehand)."""
    valid = np.isfinite(gt)
    p, g = pred[valid].astype(np.float64), gt[valid].astype(np.float64)
    spearman = float(np.corrcoef(_ranks(p), _ranks(g))[0, 1])
    scale = np.median(g) / np.median(p) if np.median(p) != 0 else 0.0
    absrel = float(np.mean(np.abs(p * scale - g) / g))
    return {"spearman": spearman, "absrel": absrel}


def shift(left: torch.Tensor, s: int) -> torch.Tensor:
    """``right(x) = left(x + s)``, border replicated. ``(B, C, H, W)``."""
    if s == 0:
        return left
    if s > 0:
        return torch.cat((left[..., s:], left[..., -1:].expand(*left.shape[:-1], s)), dim=-1)
    return torch.cat((left[..., :1].expand(*left.shape[:-1], -s), left[..., :s]), dim=-1)


def best_shift(left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The oracle baseline: the single shift (-5% to +25% of the width) with the best PSNR."""
    w = left.shape[-1]
    best, best_s = None, 0
    for s in range(-w // 20, w // 4 + 1):
        err = float(((shift(left, s) - right) ** 2).mean())
        if best is None or err < best:
            best, best_s = err, s
    return shift(left, best_s), best_s


def robust_nearness(d: torch.Tensor, lo: float = 0.02, hi: float = 0.98) -> torch.Tensor:
    """Disparity-like map -> nearness in ``[0, 1]`` between its 2nd and 98th percentiles (spikes clipped).
    ``(1, 1, H, W) -> (1, 1, H, W)``."""
    q = torch.quantile(d.flatten().float()[:: max(1, d.numel() // 200_000)], torch.tensor([lo, hi]))
    return ((d - q[0]) / (q[1] - q[0]).clamp(min=1e-6)).clamp(0, 1)


def vertical_prior(left: torch.Tensor) -> torch.Tensor:
    """ "Lower in the frame is nearer": nearness = row / height. ``(B, 3, H, W) -> (B, 1, H, W)``."""
    b, _, h, w = left.shape
    return (torch.arange(h, dtype=left.dtype) / max(h - 1, 1)).view(1, 1, h, 1).expand(b, 1, h, w)


def fit_knobs(left: torch.Tensor, right: torch.Tensor, nearness: torch.Tensor, rounds: int = 3) -> tuple[float, float]:
    """3D strength and screen plane fitted against the real eye: ``(a, b)`` of disparity ``a * n + b`` in px
    of ``left``'s width, ``a >= 0``, by coarse-to-fine grid search of PSNR through :func:`synthesize_view`
    at :data:`FIT_WIDTH`. ``left, right (1, 3, H, W)``, ``nearness (1, 1, H, W)`` in ``[0, 1]``."""
    h, w = left.shape[-2:]
    scale = min(1.0, FIT_WIDTH / w)
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    small = [F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1) for x in (left, right)]
    n = F.interpolate(nearness, size=size, mode="bilinear", align_corners=False)
    ws = size[1]

    def err(a: float, b: float) -> float:
        return float(((synthesize_view(small[0], a * n + b, 1).clamp(0, 1) - small[1]) ** 2).mean())

    a_lo, a_hi, b_lo, b_hi, steps = 0.0, 0.25 * ws, -0.05 * ws, 0.25 * ws, 13
    best = (float("inf"), 0.0, 0.0)
    with torch.inference_mode():
        for _ in range(rounds):
            for a in np.linspace(a_lo, a_hi, steps):
                for b in np.linspace(b_lo, b_hi, steps):
                    best = min(best, (err(float(a), float(b)), float(a), float(b)))
            da, db = (a_hi - a_lo) / (steps - 1), (b_hi - b_lo) / (steps - 1)
            a_lo, a_hi = max(0.0, best[1] - da), best[1] + da
            b_lo, b_hi = best[2] - db, best[2] + db
            steps = 7
    return best[1] / scale, best[2] / scale


def default_vertical_prior() -> float:
    """The vertical prior weight of the bundled model as convert.py runs it (``conf/depth/s3d_lite0.yaml``)."""
    return float(compose("convert", ["depth=s3d_lite0"]).depth.get("vertical_prior", 0.0))


def fitted_view(left: torch.Tensor, right: torch.Tensor, nearness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The other eye through the conversion path with fitted knobs, and the nearness (for its rank agreement)."""
    a, b = fit_knobs(left, right, nearness)
    with torch.inference_mode():
        return synthesize_view(left, a * nearness + b, 1), nearness


def predict(model: ViewModel, depth, left: torch.Tensor, work_width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A model at its training width (:meth:`ViewModel.at_width`): the right eye at full size and the
    source-view disparity (px) where the model has one."""
    with torch.inference_mode():
        out = model.at_width(left, depth, work_width)
    return out.pred, out.source_disparity


def cached_teacher_disparity(
    teacher, weights: Path, left_path: Path, right_path: Path, left: torch.Tensor, right: torch.Tensor, cache: str | None
) -> torch.Tensor:
    """The teacher's dense left-view disparity of a pair (:func:`s3d.data.teacher.teacher_disparity`), kept in
    ``cache`` (a folder; None: not kept) under the training labels' key (:func:`s3d.data.teacher.label_key`: the
    images, the teacher's ``weights`` file, the settings): re-evaluations skip the teacher."""
    from safetensors.torch import load_file, save_file

    from s3d.data.teacher import LabelSettings, label_key, teacher_disparity
    from s3d.io.weights import file_sha256

    path = None
    if cache:
        path = Path(cache) / f"dense_{label_key(left_path, right_path, file_sha256(weights), LabelSettings())}.safetensors"
        if path.is_file():
            return load_file(str(path))["disparity"]
    d = teacher_disparity(teacher, left, right, LabelSettings())
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, overwrite=True) as tmp:
            save_file({"disparity": d.contiguous()}, str(tmp))
    return d


def _save_png(path: Path, image: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp:
        Image.fromarray(to_uint8(image[0]).contiguous().numpy()).save(tmp)


def evaluate(cfg: DictConfig) -> dict:
    roots = [cfg.pairs] if isinstance(cfg.pairs, str) else list(cfg.pairs)
    pairs = [(name, l, r) for root in roots for name, l, r in find_pairs(root)]
    if not pairs:
        raise S3DError(", ".join(roots), "no stereo pairs found")
    device = torch.device("cpu")
    models = {}
    nearness_of = {}  # name -> the depth backend convert.py would run for that model
    for name, path in cfg.models.items():
        if path:
            models[name] = load_model(Path(path), cfg.weights_dir, device)
            if isinstance(models[name][0], Lite0WarpNet):  # its own disparity is the nearness convert.py runs
                backend = S3DLite0Depth(str(path), resolution=cfg.depth_resolution)
                backend.vertical_prior = default_vertical_prior() if cfg.vertical_prior is None else float(cfg.vertical_prior)
                nearness_of[name] = accelerate(backend.eval(), device, engine=cfg.engine)
    depth_rows = {}  # depth=NAME: that network as convert.py builds it here (depth=auto: never fetched by an evaluation)
    if cfg.get("depth"):
        from s3d.depth.auto import resolve_depth

        resolve_depth(cfg, fetch=False)
        depth_rows[cfg.depth.name] = accelerate(build_depth(cfg.depth, device), device, engine=cfg.engine)
    fill_net = load_fill_net(Path(cfg.fill_weights), device) if LEARNED in cfg.fills else None
    teacher = None
    if cfg.teacher and not Path(cfg.teacher).is_file():
        log.warning("%s: no PSMNet weights (make weights teacher=psmnet): the teacher row is left out", cfg.teacher)
    elif cfg.teacher:
        from s3d.models.psmnet import load_psmnet

        teacher = load_psmnet(cfg.teacher)
    per_pair: dict[str, dict[str, dict[str, float]]] = {}
    for pair, lp, rp in pairs:
        left, right = load_rgb(lp), load_rgb(rp)
        if left.shape != right.shape:
            raise S3DError(lp, f"left {tuple(left.shape)} and right {tuple(right.shape)} differ in size")
        gt = load_gt_disparity(lp.parent, lp)
        preds: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {"identity": (left, None)}
        shifted, s = best_shift(left, right)
        preds["shift"] = (shifted, None)
        for name, (model, depth) in models.items():
            preds[name] = predict(model, depth, left, cfg.work_width)
            disp = preds[name][1]
            if disp is not None:  # the conversion path: the model's depth, the DIBR warp and background fill
                with torch.inference_mode():
                    preds[f"{name}_dibr"] = (synthesize_view(left, disp, direction=1), disp)
            if name in nearness_of and cfg.fit_rows:
                preds[f"{name}_fit"] = fitted_view(left, right, nearness_of[name](left))
        for name, backend in depth_rows.items() if cfg.fit_rows else ():
            preds[f"{name}_fit"] = fitted_view(left, right, backend(left))
        if cfg.fit_rows:
            preds["yprior"] = fitted_view(left, right, vertical_prior(left))
        fills = {}
        if teacher is not None:
            d_teacher = cached_teacher_disparity(teacher, Path(cfg.teacher), lp, rp, left, right, cfg.teacher_cache)
            if cfg.fit_rows:
                preds["teacher"] = fitted_view(left, right, robust_nearness(d_teacher))
            frames = to_uint8(left)
            for fill in cfg.fills:  # the conversion's own eye (the CPU kernel) from the teacher's disparity exactly: only the rendering differs
                eye = render_view_uint8(frames, d_teacher, 1, "bicubic", fill, fill_net).permute(0, 3, 1, 2).float() / 255
                fills[f"fill_{fill}"] = fill_metrics(eye, right, left, d_teacher)
        per_pair[pair] = {}
        for name, (pred, disp) in preds.items():
            m = image_metrics(pred, right)
            if gt is not None and disp is not None:
                m.update(disparity_metrics(disp[0, 0].numpy(), gt))
                if name.endswith("_fit") or name in ("yprior", "teacher"):
                    del m["absrel"]  # a nearness has no unit to median-scale; its ranks are what it has
            per_pair[pair][name] = m
            if cfg.save_images:
                _save_png(Path(cfg.save_images) / name / f"{pair}.png", pred)
        per_pair[pair].update(fills)
        log.info("%s: best shift %d px; %s", pair, s, ", ".join(f"{n} psnr {v['psnr']:.2f}" for n, v in per_pair[pair].items()))
    names = list(next(iter(per_pair.values())))
    mean = {
        n: {k: float(np.nanmean([p[n][k] for p in per_pair.values() if k in p[n]])) for k in METRICS if any(k in p[n] for p in per_pair.values())}
        for n in names
    }
    result = {"mean": mean, "fit": fit_summary(per_pair), "pairs": per_pair, "pairs_root": roots, "work_width": cfg.work_width}
    if cfg.output:
        out = Path(cfg.output)
        with atomic_output(out, overwrite=True) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


def fit_summary(per_pair: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """For each fitted row: mean PSNR gain over the fitted shift (dB), and the share of pairs where it
    beats the fitted vertical prior (``beats_yprior``) and by more than 0.05 dB."""
    names = [n for n in next(iter(per_pair.values())) if n.endswith("_fit") or n in ("yprior", "teacher")]
    if "yprior" not in names:  # fit_rows=false
        return {}
    out = {}
    for n in names:
        rows = [p for p in per_pair.values() if n in p]
        gains = [p[n]["psnr"] - p["shift"]["psnr"] for p in rows]
        out[n] = {
            "gain_over_shift_db": float(np.mean(gains)),
            "pairs": len(rows),
            "beats_yprior": float(np.mean([p[n]["psnr"] > p["yprior"]["psnr"] for p in rows])),
            "beats_yprior_by_0.05db": float(np.mean([p[n]["psnr"] > p["yprior"]["psnr"] + 0.05 for p in rows])),
        }
    return out


def format_table(result: dict) -> str:
    """A Markdown table of the means."""
    cols = [k for k in METRICS if any(k in m for m in result["mean"].values())]
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, m in result["mean"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.3f}" if k in m else "-" for k in cols) + " |")
    if result.get("fit"):
        lines += ["", "| fitted (3D strength and screen plane per pair) | gain over fitted shift, dB | beats yprior |", "|---|---|---|"]
        lines += [f"| {n} | {f['gain_over_shift_db']:+.2f} | {f['beats_yprior']:.0%} |" for n, f in result["fit"].items()]
    return "\n".join(lines)
