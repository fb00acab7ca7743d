"""Stereo-matching hints (s3d.data.hints) and the Depth Hints loss term."""

from __future__ import annotations

import torch

from s3d.config import PROJECT_ROOT
from s3d.data.hints import stereo_hints
from s3d.data.pairs import StereoPairs, find_pairs
from s3d.losses import ViewLoss, hint_loss
from s3d.models.common import ViewPrediction


def _scene(h: int = 48, w: int = 96, d_bg: int = 3, d_fg: int = 9) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A textured background at ``d_bg`` and a textured square in front at ``d_fg``; left, right, true d."""
    g = torch.Generator().manual_seed(0)
    bg, fg = torch.rand(3, h, w + 32, generator=g), torch.rand(3, h, w + 32, generator=g)
    left, right, d = torch.empty(3, h, w), torch.empty(3, h, w), torch.full((1, h, w), float(d_bg))
    x = torch.arange(w)
    inside = lambda xs: (xs >= 40) & (xs < 64)
    left[:] = bg[:, :, x + 16]
    right[:] = bg[:, :, x + d_bg + 16]  # right(x) = left(x + d)
    rows = slice(12, 36)
    left[:, rows][:, :, inside(x)] = fg[:, rows][:, :, x[inside(x)]]
    d[:, rows][:, :, inside(x)] = d_fg
    xr = x + d_fg
    right[:, rows][:, :, inside(xr)] = fg[:, rows][:, :, xr[inside(xr)]]
    return left, right, d


def test_hints_recover_known_disparities_and_reject_occlusions():
    left, right, d = _scene()
    hl, hr = stereo_hints(left, right, -4, 16)
    known = torch.isfinite(hl)
    assert known.float().mean() > 0.6
    assert ((hl[known] - d[known]).abs() <= 1).float().mean() > 0.97
    # the background strip left of the square (left columns 34..40) is hidden by it in the right eye
    occluded = hl[0, 14:34, 35:39]
    assert torch.isfinite(occluded).float().mean() < 0.5
    assert torch.isfinite(hr).float().mean() > 0.6


def test_hint_loss_uses_only_hints_that_rebuild_better():
    left, right, d = _scene()
    l, r, d = left[None], right[None], d[None]
    # hints live in the target (right) view here; build them there by matching the mirrored scene
    _, hr = stereo_hints(left, right, -4, 16)
    hr = hr[None]
    wrong = torch.zeros_like(d, requires_grad=True)
    loss = hint_loss(wrong, hr, l, r, direction=1)
    assert loss > 0.5
    loss.backward()
    assert wrong.grad.abs().sum() > 0
    # a prediction equal to the hints: nothing left to learn
    assert hint_loss(hr.nan_to_num(0), hr, l, r, direction=1) < 1e-6

    # hints that rebuild worse than the prediction are ignored: a wrong constant hint barely counts
    # against the true disparity (only where both rebuild equally badly, at the borders)
    def pulled(pred: torch.Tensor, hint: torch.Tensor) -> float:
        """Fraction of pixels the hint pulls on."""
        pred = pred.clone().requires_grad_(True)
        hint_loss(pred, hint, l, r, direction=1).backward()
        return float((pred.grad != 0).float().mean())

    truth = torch.where(torch.isfinite(hr), hr, torch.full_like(hr, 3.0))
    assert pulled(truth, torch.full_like(hr, 15.0)) < 0.05
    assert pulled(torch.full_like(hr, 15.0), truth) > 0.9


def test_view_loss_adds_hints_term_for_warp_outputs():
    x = torch.rand(1, 3, 16, 16)
    out = ViewPrediction(x, disparity=torch.zeros(1, 1, 16, 16), source_disparity=torch.zeros(1, 1, 16, 16), warped=x)
    hints = {"left": torch.full((1, 1, 16, 16), float("nan")), "right": torch.full((1, 1, 16, 16), float("nan"))}
    _, terms = ViewLoss(mse=1, ssim=0, hints=1)(out, x, x, hints)
    assert "hints" in terms and terms["hints"] == 0
    _, terms = ViewLoss(mse=1, ssim=0, hints=1)(out, x, x, None)
    assert "hints" not in terms


def test_dataset_crops_and_flips_hints_with_the_eyes(monkeypatch):
    pairs = find_pairs(PROJECT_ROOT / "data" / "pairs")[:1]
    ds = StereoPairs(pairs, (64, 96), train=True, resize_width=160, hints=(-8, 32))
    hl, hr = ds.maps["hint"][0]
    import s3d.data.pairs as mod

    monkeypatch.setattr(mod.random, "randint", lambda a, b: 0)
    monkeypatch.setattr(mod.random, "random", lambda: 0.0)  # always flip
    item = ds[0]
    torch.testing.assert_close(item["hint_left"], hr[:, :64, :96].flip(-1), equal_nan=True)
    torch.testing.assert_close(item["hint_right"], hl[:, :64, :96].flip(-1), equal_nan=True)
    assert torch.isfinite(item["hint_left"]).any()
