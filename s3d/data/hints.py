"""Disparity hints for training: classical stereo matching on the training pairs (Depth Hints, Watson et al.
ICCV 2019, with block matching instead of SGM).

The photometric loss alone gives the monocular network little gradient on flat or repetitive surfaces,
and with a few dozen training scenes it settles on a "lower in the frame = nearer" prior. A matcher that
sees both eyes gives a direct, if sparse and noisy, disparity for the same pixels; the loss
(:func:`s3d.losses.hint_loss`) uses a hint only where it rebuilds the other eye better than the
network's own disparity does, so wrong hints are ignored rather than learnt.

Matching: 7x7 census transform (robust to the exposure differences between the two cameras), Hamming
cost aggregated over a square window, winner-take-all, then a left-right consistency check and a
uniqueness ratio; what fails either is NaN. Disparities follow :mod:`s3d.stereo` (``d = x_left - x_right``,
in pixels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def census(gray: torch.Tensor, size: int = 7) -> torch.Tensor:
    """``(1, H, W) -> (size*size - 1, H, W)`` bool: is each neighbour darker than the centre."""
    r = size // 2
    padded = F.pad(gray[None], (r, r, r, r), mode="replicate")[0]
    h, w = gray.shape[-2:]
    bits = [padded[:, dy : dy + h, dx : dx + w] < gray for dy in range(size) for dx in range(size) if (dy, dx) != (r, r)]
    return torch.cat(bits, dim=0)


def cost_volume(left: torch.Tensor, right: torch.Tensor, disparities: range, window: int = 9) -> torch.Tensor:
    """Census Hamming cost of matching left pixel ``x`` with right pixel ``x - d``, box-aggregated.

    ``left, right (3, H, W)`` -> ``(D, H, W)``; where ``x - d`` falls outside the right eye the cost is
    ``inf``.
    """
    cl, cr = census(left.mean(0, keepdim=True)), census(right.mean(0, keepdim=True))
    w = left.shape[-1]
    costs = []
    for d in disparities:
        shifted = torch.roll(cr, shifts=d, dims=-1)  # shifted[..., x] = cr[..., x - d]
        c = (cl ^ shifted).float().mean(0, keepdim=True)
        c = F.avg_pool2d(c[None], window, stride=1, padding=window // 2, count_include_pad=False)[0, 0]
        x = torch.arange(w)
        c[:, (x - d < 0) | (x - d >= w)] = float("inf")
        costs.append(c)
    return torch.stack(costs)


def match(left: torch.Tensor, right: torch.Tensor, min_disparity: int, max_disparity: int, window: int = 9, uniqueness: float = 0.9) -> torch.Tensor:
    """Winner-take-all left-view disparity with a uniqueness test: ``(3, H, W) x 2 -> (1, H, W)``, NaN = none."""
    ds = range(min_disparity, max_disparity + 1)
    cost = cost_volume(left, right, ds, window)
    best, idx = cost.min(0)
    # uniqueness: the best must beat every candidate more than one pixel away by the ratio
    d = torch.arange(len(ds))[:, None, None]
    far = (d - idx[None]).abs() > 1
    second = torch.where(far, cost, torch.full_like(cost, float("inf"))).min(0).values
    disp = (idx + min_disparity).float()
    ok = torch.isfinite(best) & (best < uniqueness * second)
    return torch.where(ok, disp, torch.full_like(disp, float("nan")))[None]


def stereo_hints(
    left: torch.Tensor, right: torch.Tensor, min_disparity: int, max_disparity: int, window: int = 9, tolerance: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-view and right-view disparities that pass the left-right consistency check.

    ``left, right (3, H, W)`` in ``[0, 1]`` -> ``(hint_left (1, H, W), hint_right (1, H, W))`` px, NaN where
    unknown. The right view is matched as the mirrored scene (mirroring swaps the eyes and keeps ``d``).
    """
    dl = match(left, right, min_disparity, max_disparity, window)
    dr = match(right.flip(-1), left.flip(-1), min_disparity, max_disparity, window).flip(-1)
    w = left.shape[-1]
    x = torch.arange(w).float().expand_as(dl)

    def consistent(d_here: torch.Tensor, d_there: torch.Tensor, sign: int) -> torch.Tensor:
        # left pixel x sees right pixel x - d; right pixel x sees left pixel x + d
        at = (x - sign * d_here).round().clamp(0, w - 1).nan_to_num(0).long()
        back = torch.gather(d_there.nan_to_num(float("inf")), -1, at)
        return torch.where((d_here - back).abs() <= tolerance, d_here, torch.full_like(d_here, float("nan")))

    return consistent(dl, dr, 1), consistent(dr, dl, -1)
