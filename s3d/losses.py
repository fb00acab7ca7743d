"""Training losses: a weighted sum whose every weight is a config value (``conf/loss``).

Terms: ``mse``, ``ssim`` (kornia) and ``vgg`` (low-level VGG16 features, :mod:`s3d.vgg`) on the
generated eye, as in the article; for the warp model also
``photometric`` (monodepth's 0.85 SSIM + 0.15 L1 on the warped eye before inpainting) and ``smooth``
(edge-aware smoothness of the disparity, scale-free) and ``hints`` (stereo-matched disparities where they
rebuild the other eye better, :mod:`s3d.data.hints`) and ``teacher`` (a stereo teacher's dense disparity
where its two views agree, :mod:`s3d.data.teacher`, scale-and-shift invariant). All take ``(B, C, H, W)``
in ``[0, 1]``.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn as nn
import torch.nn.functional as F

from s3d.models.common import ViewPrediction
from s3d.stereo import backward_warp

SSIM_WINDOW = 11  # the reported SSIM (Wang et al. 2004's 11 x 11 window): val/ssim and evaluate.py alike


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The SSIM the project reports, averaged: ``(B, C, H, W) x 2 -> ()``. The losses' window is their own
    setting (``loss.ssim_window``)."""
    return kornia.metrics.ssim(pred, target, SSIM_WINDOW).mean()


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, window: int = 7) -> torch.Tensor:
    """``(1 - SSIM) / 2``, averaged: 0 for identical images. ``(B, C, H, W) x 2 -> ()``."""
    return kornia.losses.ssim_loss(pred, target, window_size=window)


def photometric_loss(pred: torch.Tensor, target: torch.Tensor, window: int = 7, alpha: float = 0.85) -> torch.Tensor:
    """monodepth's appearance loss ``alpha * (1 - SSIM) / 2 + (1 - alpha) * L1``. ``-> ()``."""
    return alpha * ssim_loss(pred, target, window) + (1 - alpha) * (pred - target).abs().mean()


def photometric_error(pred: torch.Tensor, target: torch.Tensor, window: int = 7, alpha: float = 0.85) -> torch.Tensor:
    """:func:`photometric_loss` per pixel: ``(B, C, H, W) x 2 -> (B, 1, H, W)``."""
    dssim = (1 - kornia.metrics.ssim(pred, target, window)) / 2
    return (alpha * dssim + (1 - alpha) * (pred - target).abs()).mean(1, keepdim=True)


def hint_loss(disparity: torch.Tensor, hint: torch.Tensor, source: torch.Tensor, target: torch.Tensor, direction: int, window: int = 7) -> torch.Tensor:
    """Depth Hints: ``log(1 + |d - hint|)`` (px) where the hint exists and rebuilds ``target`` from
    ``source`` better than ``disparity`` does. ``disparity, hint (B, 1, H, W)`` px in ``target``'s view,
    NaN = no hint; ``source, target (B, 3, H, W)`` -> ``()``."""
    known = torch.isfinite(hint)
    h = hint.nan_to_num(0.0)
    with torch.no_grad():
        err_pred = photometric_error(backward_warp(source, disparity.detach(), direction), target, window)
        err_hint = photometric_error(backward_warp(source, h, direction), target, window)
        use = (known & (err_hint < err_pred)).float()
    return (torch.log1p((disparity - h).abs()) * use).sum() / use.sum().clamp(min=1)


def robust_normalize(x: torch.Tensor) -> torch.Tensor:
    """Shift to the median, scale by the mean absolute deviation (MiDaS): ``(N,) -> (N,)``, scale-and-shift free."""
    centred = x - x.median()
    return centred / centred.abs().mean().clamp(min=1e-6)


def ssi_loss(pred: torch.Tensor, target: torch.Tensor, clip: float = 0.02) -> torch.Tensor:
    """Scale-and-shift-invariant L1 between a predicted and a teacher disparity (Ranftl et al., MiDaS),
    on the pixels where ``target`` is known: each image's known pixels are median-centred and MAD-scaled,
    so the prediction's unit (fraction of the width) and the teacher's (px at its size) do not matter.
    Pixels outside the teacher's ``clip`` and ``1 - clip`` quantiles are left out, so a few spikes (glass,
    reflections) neither set its scale nor train. ``pred, target (B, 1, H, W)``, target NaN = unknown -> ``()``."""
    losses = []
    for p, t in zip(pred, target):
        known = torch.isfinite(t)
        if known.sum() < 16:
            continue
        tk, pk = t[known], p[known]
        if clip > 0:
            lo, hi = torch.quantile(tk.float(), torch.tensor([clip, 1 - clip], dtype=torch.float32, device=tk.device)).to(tk.dtype)
            inside = (tk >= lo) & (tk <= hi)
            tk, pk = tk[inside], pk[inside]
        losses.append((robust_normalize(pk) - robust_normalize(tk)).abs().mean())
    return torch.stack(losses).mean() if losses else pred.sum() * 0


def smoothness_loss(disparity: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware first-order smoothness of mean-normalised disparity. ``(B,1,H,W), (B,3,H,W) -> ()``."""
    d = disparity / (disparity.abs().mean(dim=(2, 3), keepdim=True) + 1e-7)
    dx, dy = (d[..., :, 1:] - d[..., :, :-1]).abs(), (d[..., 1:, :] - d[..., :-1, :]).abs()
    ix = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    iy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-ix)).mean() + (dy * torch.exp(-iy)).mean()


class PerceptualLoss(nn.Module):
    """Relative L1 distance of VGG16 activations, averaged over layers: 0 for identical images. ``-> ()``.

    Each layer's distance is divided by the target's mean activation, so layers and weight files with
    different input scalings weigh alike.
    """

    def __init__(self, weights: str, layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3")):
        super().__init__()
        from s3d.vgg import VGGFeatures

        self.vgg = VGGFeatures(weights, tuple(layers))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ft = self.vgg(target)
        fp = self.vgg(pred)
        return sum((a - b).abs().mean() / (b.abs().mean() + 1e-6) for a, b in zip(fp, ft)) / len(ft)


def shift_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each image moved along its rows by ``shift`` px (sub-pixel, bilinear; the edge columns repeat):
    ``x (B, C, H, W)``, ``shift (B,)`` -> ``(B, C, H, W)``. What a slightly different depth does to a warped eye."""
    b, _, h, w = x.shape
    if shift.shape != (b,):
        raise ValueError(f"expected one shift per image, {b}, got {tuple(shift.shape)}")
    xs = torch.arange(w, dtype=x.dtype, device=x.device).expand(b, h, w) - shift.to(x.dtype)[:, None, None]
    ys = torch.arange(h, dtype=x.dtype, device=x.device)[:, None].expand(b, h, w)
    grid = torch.stack((2 * xs / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def masked_change(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of ``a`` and ``b`` over ``mask``'s pixels (0 where it is empty):
    ``(B, C, H, W) x 2``, ``mask (B, 1, H, W)`` bool ``-> ()``."""
    m = mask.to(a.dtype)
    return ((a - b).abs() * m).sum() / (m.sum() * a.shape[1]).clamp(min=1)


class ViewLoss(nn.Module):
    """Weighted sum of the terms above; a zero weight skips its term (and loads nothing for it)."""

    def __init__(
        self,
        mse: float = 1.0,
        ssim: float = 1.0,
        vgg: float = 0.0,
        photometric: float = 0.0,
        smooth: float = 0.0,
        hints: float = 0.0,
        teacher: float = 0.0,
        ssim_window: int = 7,
        vgg_weights: str | None = None,
        vgg_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3"),
    ):
        super().__init__()
        self.weights = {"mse": mse, "ssim": ssim, "vgg": vgg, "photometric": photometric, "smooth": smooth, "hints": hints, "teacher": teacher}
        self.window = ssim_window
        self.perceptual = PerceptualLoss(vgg_weights, tuple(vgg_layers)) if vgg else None

    def forward(
        self,
        out: ViewPrediction,
        target: torch.Tensor,
        image: torch.Tensor,
        hints: dict[str, torch.Tensor] | None = None,
        teacher: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``out`` from a model, ``target``/``image`` ``(B, 3, H, W)`` -> ``(total, {term: value})``.

        ``hints``, ``teacher``: ``{"left": (B, 1, H, W), "right": ...}`` disparities of both views (px, NaN = none)."""
        terms: dict[str, torch.Tensor] = {}
        w = self.weights
        if w["mse"]:
            terms["mse"] = F.mse_loss(out.pred, target)
        if w["ssim"]:
            terms["ssim"] = ssim_loss(out.pred, target, self.window)
        if self.perceptual is not None:
            terms["vgg"] = self.perceptual(out.pred, target)
        if w["photometric"] and out.warped is not None:
            terms["photometric"] = photometric_loss(out.warped, target, self.window)
            if out.source_disparity is not None:  # monodepth: the source-view disparity must rebuild the input eye too
                rebuilt = backward_warp(target, out.source_disparity, direction=-1)
                terms["photometric"] = terms["photometric"] + photometric_loss(rebuilt, image, self.window)
        if w["smooth"] and out.disparity is not None:
            terms["smooth"] = smoothness_loss(out.disparity, image)
            if out.source_disparity is not None:
                terms["smooth"] = terms["smooth"] + smoothness_loss(out.source_disparity, image)
        if w["hints"] and hints is not None and out.disparity is not None:
            terms["hints"] = hint_loss(out.disparity, hints["right"], image, target, 1, self.window)
            if out.source_disparity is not None:
                terms["hints"] = terms["hints"] + hint_loss(out.source_disparity, hints["left"], target, image, -1, self.window)
        if w["teacher"] and teacher is not None and out.disparity is not None:
            terms["teacher"] = ssi_loss(out.disparity, teacher["right"])
            if out.source_disparity is not None:
                terms["teacher"] = terms["teacher"] + ssi_loss(out.source_disparity, teacher["left"])
        if not terms:
            raise ValueError("every loss weight that applies to this model is zero")
        total = sum(w[k] * v for k, v in terms.items())
        return total, terms
