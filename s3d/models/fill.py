"""The learned fill of disocclusions (issue 24): the article's network where it is strong, in a narrow band.

The warp keeps the input eye sharp everywhere it can show; what it cannot show (the background the input never
saw, beside depth edges) gets a first fill from the background side (``fill=smooth``). This network repaints
those holes and the few pixels beside them (:func:`fill_region`), and nothing else: every other pixel stays the
warped input's. Its input: the warped eye, the hole mask, the target view's disparity and two CoordConv
channels; its body: the article's encoder-decoder with skip connections whose last residual blocks use
horizontally elongated kernels; its output: a residual on the first fill, zero at the start of training.

At conversion it runs on tiles around the holes only (:func:`fill_tiles`): the holes are a few percent of a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from s3d.models.common import UNet, coord_channels
from s3d.stereo.fill import fill_from_background
from s3d.stereo.kernel import HAVE_NUMBA, holes_and_target
from s3d.stereo.warp import forward_disparity

LEARNED = "learned"  # the name of this fill among the conversion's (s3d.pipeline.CONVERT_FILLS)
DISPARITY_SCALE = 16.0  # px: the disparity input is d / 16 (holes are as wide as the disparity jumps, a few to tens of px)


@dataclass
class FillPrediction:
    """``pred (B, 3, H, W)`` in ``[0, 1]``: the eye with its region repainted; ``region (B, 1, H, W)`` bool: the
    pixels the network may change (the holes and ``band`` px beside them along the row)."""

    pred: torch.Tensor
    region: torch.Tensor


def fill_region(holes: torch.Tensor, band: int) -> torch.Tensor:
    """The holes grown by ``band`` px either side along the row: ``(B, 1, H, W) bool -> (B, 1, H, W) bool``."""
    if band == 0:
        return holes
    return F.max_pool2d(holes.float(), (1, 2 * band + 1), stride=1, padding=(0, band)) > 0


class FillNet(nn.Module):
    """``forward(warped (B, 3, H, W), holes (B, 1, H, W) bool, disparity (B, 1, H, W) px) -> FillPrediction``."""

    def __init__(self, width: int = 16, depth: int = 3, tail: int = 2, tail_kernel: tuple[int, int] = (3, 7), band: int = 4):
        super().__init__()
        self.band = band
        self.bf16 = False  # inference under bf16 autocast (fill_tiles): set where the CPU computes bf16 natively
        self.body = UNet(3 + 1 + 1 + 2, width, depth, tail, tail_kernel)
        self.head = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.head.weight)  # the first fill, unchanged, until training says otherwise
        nn.init.zeros_(self.head.bias)

    def forward(self, warped: torch.Tensor, holes: torch.Tensor, disparity: torch.Tensor) -> FillPrediction:
        b, _, h, w = warped.shape
        if warped.dim() != 4 or warped.shape[1] != 3 or holes.shape != (b, 1, h, w) or disparity.shape != (b, 1, h, w):
            raise ValueError(
                f"expected warped (B, 3, H, W), holes and disparity (B, 1, H, W), got {tuple(warped.shape)}, {tuple(holes.shape)}, {tuple(disparity.shape)}"
            )
        region = fill_region(holes.bool(), self.band)
        x = torch.cat((warped * 2 - 1, holes.to(warped.dtype), disparity.to(warped.dtype) / DISPARITY_SCALE, coord_channels(warped)), dim=1)
        residual = self.head(self.body(x))
        return FillPrediction(torch.where(region, (warped + residual).clamp(0, 1), warped), region)


def fill_inputs(disparity: torch.Tensor, direction: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """What the network reads of a warp besides the eye, from the source view's disparity: the holes (target pixels
    no source pixel lands on) and the target view's disparity, each hole given its background side's.
    ``(B, 1, H, W) px -> (holes (B, 1, H, W) bool, disparity (B, 1, H, W) px)``. float32 on the CPU: by the numba
    kernel (one pass per row), else :func:`fill_inputs_reference`."""
    if HAVE_NUMBA and disparity.device.type == "cpu" and disparity.dtype == torch.float32:
        return holes_and_target(disparity, direction)
    return fill_inputs_reference(disparity, direction)


def fill_inputs_reference(disparity: torch.Tensor, direction: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fill_inputs` in torch, on any device and dtype."""
    target, valid = forward_disparity(disparity, direction)
    _, target = fill_from_background(target, target, valid, mirror=False)
    return ~valid, target


TILE = (64, 16)  # (rows, columns) of the cells the network repaints: holes are thin and tall
CONTEXT = (16, 16)  # px each window reaches beyond its cells, within the frame where it fits (the network's reach)


def tile_origins(holes: torch.Tensor, tile: tuple[int, int], band: int = 0) -> torch.Tensor:
    """The ``(b, y, x)`` corners of the cells of a ``tile`` grid over the frame that hold a pixel of the region
    (:func:`fill_region`: the holes grown by ``band`` px along the row), found without growing the whole frame.
    ``(B, 1, H, W) bool -> (N, 3) long``."""
    rows = F.max_pool2d(holes.float(), (tile[0], 1), (tile[0], 1), ceil_mode=True)  # (B, 1, cell rows, W): a hole in the cell's rows
    cells = F.max_pool2d(rows, (1, tile[1] + 2 * band), (1, tile[1]), padding=(0, band), ceil_mode=True) > 0
    found = cells[:, 0].nonzero()
    return torch.stack((found[:, 0], found[:, 1] * tile[0], found[:, 2] * tile[1]), dim=1)


def column_runs(origins: list[list[int]], rows: int) -> list[tuple[int, int, int, int]]:
    """Cells stacked in one column of the grid, merged: ``(b, y, x, cells)`` per run, from ``tile_origins``
    (row-major). One tall window costs half of its cells' windows (their context rows overlap)."""
    runs: list[list[int]] = []
    for b, y, x in sorted(origins, key=lambda o: (o[0], o[2], o[1])):
        last = runs[-1] if runs else None
        if last and last[0] == b and last[2] == x and last[1] + last[3] * rows == y:
            last[3] += 1
        else:
            runs.append([b, y, x, 1])
    return [tuple(r) for r in runs]


def _window(start: int, cell: int, context: int, size: int) -> tuple[slice, int]:
    """Rows (or columns) of the window around a cell at ``start``: kept inside the frame (as the training patches
    are), the whole frame where it is shorter; and where the cell begins in it."""
    n = min(cell + 2 * context, size)
    first = min(max(start - context, 0), size - n)
    return slice(first, first + n), start - first


@torch.no_grad()
def fill_tiles(
    net: FillNet,
    eye: torch.Tensor,
    holes: torch.Tensor,
    disparity: torch.Tensor,
    tile: tuple[int, int] = TILE,
    context: tuple[int, int] = CONTEXT,
) -> torch.Tensor:
    """:class:`FillNet` on the cells of a ``tile`` grid that hold holes, each column's stacked cells in one window
    with ``context`` px around it, pasted into a copy of ``eye``: ``eye (B, 3, H, W)`` float in [0, 1] or uint8
    (any strides: a view of ``(B, H, W, 3)`` frames works), ``holes (B, 1, H, W)`` bool, ``disparity (B, 1, H, W)``
    px (the target view's: :func:`fill_inputs`) ``-> `` like ``eye``. Pixels outside the region stay ``eye``'s.
    With ``net.bf16`` (set where the CPU computes bf16 natively: :func:`s3d.export.load_fill_net`) the network
    runs under bf16 autocast."""
    if context[1] < net.band:
        raise ValueError(f"context must reach at least the band ({net.band} px) along the row, got {context}")
    out = eye.clone()
    h, w = eye.shape[-2:]
    dtype = next(net.parameters()).dtype
    for b, y, x, cells in column_runs(tile_origins(holes, tile, net.band).tolist(), tile[0]):
        ys, oy = _window(y, cells * tile[0], context[0], h)
        xs, ox = _window(x, tile[1], context[1], w)
        image_in, holes_in, disparity_in = (src[b : b + 1, :, ys, xs] for src in (eye, holes, disparity))
        image_in = image_in.to(dtype) / 255 if eye.dtype == torch.uint8 else image_in.to(dtype)
        with torch.autocast(eye.device.type, torch.bfloat16, enabled=net.bf16):
            fill = net(image_in, holes_in, disparity_in.to(dtype))
        th, tw = min(cells * tile[0], h - y), min(tile[1], w - x)
        painted = fill.pred[0, :, oy : oy + th, ox : ox + tw].float()
        painted = (painted * 255).round().to(torch.uint8) if eye.dtype == torch.uint8 else painted.to(eye.dtype)
        cell = out[b, :, y : y + th, x : x + tw]
        # the window's region is the frame's there: the context (>= band) holds every hole it grows from
        cell.copy_(torch.where(fill.region[0, :, oy : oy + th, ox : ox + tw], painted, cell))
    return out


def repaint(net: FillNet, eye: torch.Tensor, disparity: torch.Tensor, direction: int = 1) -> torch.Tensor:
    """The learned fill over an eye the warp made (``fill=smooth``) from the source view's ``disparity`` (px):
    ``eye (B, 3, H, W)`` float or uint8, ``disparity (B, 1, H, W)`` -> like ``eye``. The network learned left ->
    right; a left eye made from the right one is mirrored (the left eye of the mirrored scene) and back."""
    holes, target = fill_inputs(disparity, direction)
    if direction == 1:
        return fill_tiles(net, eye, holes, target)
    return fill_tiles(net, eye.flip(-1), holes.flip(-1), target.flip(-1)).flip(-1)
