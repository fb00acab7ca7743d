"""The other eye from uint8 frames in one pass per row: a numba kernel for the CPU.

:func:`s3d.stereo.warp.synthesize_view` is the reference: splat the source-view disparity into the target
view (:func:`~s3d.stereo.warp.forward_disparity`), pick for each pixel the column it reads
(:func:`~s3d.stereo.fill.background_source_index`, stretched or mirrored, tolerance 0.5 px), read the source there
(:func:`~s3d.stereo.warp.sample_rows`). On the CPU that is a dozen full-frame tensors per batch, plus the
uint8 -> float -> uint8 conversions around it. :func:`synthesize_view_uint8` does the three steps per row,
its scratch in cache, from ``(B, H, W, 3) uint8`` to ``(B, H, W, 3) uint8``.

The goal is the reference's bytes, so the kernel repeats the reference's float32 steps rather than the
ideal operation: the read position goes through grid_sample's normalised coordinate and back; a row whose
normalised y does not map back to exactly its own index leans on its neighbour rows by ~1e-5, as in
grid_sample; the multiply-adds that this torch build's CPU grid_sample has fused into FMA (its compiler
contracts some of them) are fused here too (:func:`_fma`). A build that rounds those last bits otherwise
may move a rare byte lying on a rounding edge by one.

Without numba (``HAVE_NUMBA`` false) :func:`synthesize_view_uint8` runs the torch reference instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from s3d.io.image import to_tensor, to_uint8
from s3d.stereo.warp import DEFAULT_FILL, FILLS, SMOOTH_ROWS, synthesize_view

try:
    import numba
    from numba import njit, prange
    from numba.core import types as _nb_types
    from numba.extending import intrinsic

    HAVE_NUMBA = True
except ImportError:  # the kernels below stay plain (slow) Python; the wrapper uses torch instead
    numba = None
    HAVE_NUMBA = False
    prange = range

    def njit(*args, **kwargs):
        return args[0] if args and callable(args[0]) else (lambda f: f)


MODES = ("bicubic", "bilinear")
TOLERANCE = 0.5  # px, as background_source_index's default

_F0, _F1, _F2 = np.float32(0), np.float32(1), np.float32(2)
_HALF, _A = np.float32(0.5), np.float32(-0.75)  # A: the cubic convolution constant of grid_sample
_UNIT = np.arange(256, dtype=np.float32) / np.float32(255)  # byte -> float as to_tensor does: v / 255 in float32

if HAVE_NUMBA:

    @intrinsic
    def _fma(typingctx, a, b, c):
        """``a * b + c`` with one rounding (llvm.fma), float32."""
        sig = _nb_types.float32(_nb_types.float32, _nb_types.float32, _nb_types.float32)

        def codegen(context, builder, signature, args):
            return builder.fma(*args)

        return sig, codegen

else:

    def _fma(a, b, c):
        # float64 holds the float32 product exactly; the sum may round twice (never used by the wrapper)
        return np.float32(np.float64(a) * np.float64(b) + np.float64(c))


# ---------------------------------------------------------------------------------------------- splat


@njit(cache=True, fastmath=False)
def splat_row(disparity: np.ndarray, direction: int, target: np.ndarray, valid: np.ndarray) -> None:
    """One row of :func:`~s3d.stereo.warp.forward_disparity`, in place.

    ``disparity (W,) float32`` in the source view -> ``target (W,) float32`` (0 where nothing landed),
    ``valid (W,) bool``. Pixel ``x`` lands at ``x - direction * d``, written to the pixels either side; the
    largest disparity (the nearest point) wins.
    """
    w = disparity.shape[0]
    shift = np.float32(direction)
    last = np.float32(w - 1)
    for j in range(w):
        target[j] = -np.inf  # "nothing landed": below any disparity that can land (a finite one)
    for j in range(w):
        d = disparity[j]
        landing = np.float32(j) - shift * d
        lo, hi = np.floor(landing), np.ceil(landing)
        # NaN and off-screen landings fail both comparisons, so they never become an index
        if lo >= _F0 and lo <= last:
            k = int(lo)
            target[k] = max(target[k], d)
        if hi >= _F0 and hi <= last:  # hi == lo where it lands exactly: the same write twice
            k = int(hi)
            target[k] = max(target[k], d)
    for j in range(w):
        valid[j] = target[j] > -np.inf
        if not valid[j]:
            target[j] = _F0


# ----------------------------------------------------------------------------------------------- fill


@njit(cache=True, fastmath=False)
def fill_columns(target: np.ndarray, valid: np.ndarray, tolerance: float, column: np.ndarray, mirror: bool = True) -> None:
    """One row of :func:`~s3d.stereo.fill.background_source_index`, in place.

    ``target (W,) float32``, ``valid (W,) bool`` -> ``column (W,) int64``: the column each pixel reads its
    disparity and colour from. A row with no valid pixel keeps its own columns.
    """
    w = target.shape[0]
    tol = np.float32(tolerance)
    last = -1
    for j in range(w):  # column first holds the nearest valid index at or left of j
        if valid[j]:
            last = j
        column[j] = last
    right = -1
    for j in range(w - 1, -1, -1):
        if valid[j]:
            right = j
            column[j] = j
            continue
        left = column[j]
        if left < 0 and right < 0:
            column[j] = j
            continue
        take_left = left >= 0 and (right < 0 or target[left] <= target[right])  # ties go left, as the reference
        src = left if take_left else right
        reflected = 2 * src - j + 1 if take_left else 2 * src - j - 1
        if mirror and 0 <= reflected < w and valid[reflected] and target[reflected] <= target[src] + tol:
            src = reflected
        column[j] = src


# ----------------------------------------------------------------------------------------------- read


@njit(cache=True, fastmath=False)
def _unnormalize(size: int, coordinate: np.float32) -> np.float32:
    """Pixel ``coordinate`` -> the pixel position grid_sample reads (align_corners=False), via its
    normalised coordinate and back, rounded as sample_rows and grid_sample's CPU kernel round."""
    n = np.float32(size)
    g = (coordinate * _F2 + _F1) / n - _F1
    return _fma(g + _F1, n / _F2, -_HALF)


@njit(cache=True, fastmath=False)
def _cubic_far(x: np.float32) -> np.float32:
    """Cubic convolution weight for ``1 <= x < 2`` (not fused in the reference build)."""
    return ((_A * x - np.float32(5) * _A) * x + np.float32(8) * _A) * x - np.float32(4) * _A


@njit(cache=True, fastmath=False)
def _cubic_near(x: np.float32) -> np.float32:
    """Cubic convolution weight for ``0 <= x <= 1`` (the final ``+ 1`` fused in the reference build)."""
    return _fma(((_A + _F2) * x - (_A + np.float32(3))) * x, x, _F1)


@njit(cache=True, fastmath=False)
def _cubic_sum(c0, c1, c2, c3, v0, v1, v2, v3) -> np.float32:
    """``c . v`` in the reference build's order and fusing."""
    return _fma(c0, v0, c1 * v1) + c2 * v2 + c3 * v3


@njit(cache=True, fastmath=False)
def _clamp_index(i: int, n: int) -> int:
    return min(max(i, 0), n - 1)


@njit(cache=True, fastmath=False)
def _to_byte(v: np.float32) -> np.uint8:
    """As :func:`s3d.io.image.to_uint8`: ``v * 255 + 0.5``, clamped, truncated."""
    t = v * np.float32(255) + _HALF
    return np.uint8(min(max(t, _F0), np.float32(255)))


@njit(cache=True, fastmath=False)
def _source_x(j: int, target: np.ndarray, column: np.ndarray, shift: np.float32) -> np.float32:
    """Where pixel ``j`` reads the source: its fill column plus that column's disparity."""
    c = column[j]
    return np.float32(c) + shift * target[c]


@njit(cache=True, fastmath=False)
def _cubic_tap_row(image, r, a, b, c, d, ch, c0, c1, c2, c3, unit) -> np.float32:
    """Row ``r`` of ``image`` read at the four columns ``a..d`` of one channel, weighted."""
    return _cubic_sum(c0, c1, c2, c3, unit[image[r, a, ch]], unit[image[r, b, ch]], unit[image[r, c, ch]], unit[image[r, d, ch]])


@njit(cache=True, fastmath=False)
def _read_bicubic_row(image, y, target, column, shift, unit, out, valid, keep, kept) -> None:
    """Row ``y`` of the target view from ``image (H, W, 3) uint8`` -> ``out (W, 3) uint8``, bicubic, border;
    with ``keep``, the float value of each hole pixel (``valid`` false) also goes to ``kept (W, 3) float32``."""
    h, w = image.shape[0], image.shape[1]
    iy = _unnormalize(h, np.float32(y))
    y0 = np.floor(iy)
    ty = iy - y0
    top = int(min(max(y0, np.float32(-2)), np.float32(h + 1)))
    r0, r1, r2, r3 = _clamp_index(top - 1, h), _clamp_index(top, h), _clamp_index(top + 1, h), _clamp_index(top + 2, h)
    cy0, cy1, cy2, cy3 = _cubic_far(ty + _F1), _cubic_near(ty), _cubic_near(_F1 - ty), _cubic_far(_F2 - ty)
    # Most rows map back exactly (weights 0, 1, 0, 0). The others weigh their own row ~1 and the neighbours
    # ~1e-5: those can move a byte only near a rounding edge, so they are read only there. The margin bounds
    # what they add (each tap-row sum is within 1.375 in magnitude; 1e-6 covers the float roundings).
    one_row = ty == _F0
    main = r1 if ty <= _HALF else r2
    rest = abs(cy0) + abs(cy3) + (abs(_F1 - cy1) + abs(cy2) if ty <= _HALF else abs(cy1) + abs(_F1 - cy2))
    margin = rest * np.float32(1.5) + np.float32(1e-6)
    for j in range(w):
        ix = _unnormalize(w, _source_x(j, target, column, shift))
        x0 = np.floor(ix)
        tx = ix - x0
        c0, c1, c2, c3 = _cubic_far(tx + _F1), _cubic_near(tx), _cubic_near(_F1 - tx), _cubic_far(_F2 - tx)
        # clamp in float first so a huge position never overflows the integer conversion
        left = int(min(max(x0, np.float32(-2)), np.float32(w + 1)))
        a, b, c, d = _clamp_index(left - 1, w), _clamp_index(left, w), _clamp_index(left + 1, w), _clamp_index(left + 2, w)
        hole = keep and not valid[j]
        for ch in range(3):
            v = _cubic_tap_row(image, main, a, b, c, d, ch, c0, c1, c2, c3, unit)
            if one_row:
                out[j, ch] = _to_byte(v)
                if hole:
                    kept[j, ch] = v
                continue
            low, high = _to_byte(v - margin), _to_byte(v + margin)  # _to_byte is monotonic
            if low == high and not hole:
                out[j, ch] = low
                continue
            v = _cubic_sum(
                cy0,
                cy1,
                cy2,
                cy3,
                _cubic_tap_row(image, r0, a, b, c, d, ch, c0, c1, c2, c3, unit),
                _cubic_tap_row(image, r1, a, b, c, d, ch, c0, c1, c2, c3, unit),
                _cubic_tap_row(image, r2, a, b, c, d, ch, c0, c1, c2, c3, unit),
                _cubic_tap_row(image, r3, a, b, c, d, ch, c0, c1, c2, c3, unit),
            )
            out[j, ch] = _to_byte(v)
            if hole:
                kept[j, ch] = v


@njit(cache=True, fastmath=False)
def _read_bilinear_row(image, y, target, column, shift, unit, out, valid, keep, kept) -> None:
    """Row ``y`` of the target view from ``image (H, W, 3) uint8`` -> ``out (W, 3) uint8``, bilinear, border;
    ``valid``, ``keep``, ``kept`` as :func:`_read_bicubic_row`'s."""
    h, w = image.shape[0], image.shape[1]
    iy = min(max(_unnormalize(h, np.float32(y)), _F0), np.float32(h - 1))
    yn = np.floor(iy)
    north = int(yn)
    n = iy - yn  # weight of the row below; nonzero only where y does not map back exactly
    s = _F1 - n
    south_in = north + 1 < h
    for j in range(w):
        ix = min(max(_unnormalize(w, _source_x(j, target, column, shift)), _F0), np.float32(w - 1))
        xw = np.floor(ix)
        west = int(xw)
        e_in = west + 1 < w
        wt = ix - xw
        e = _F1 - wt
        nw, ne, sw, se = s * e, s * wt, n * e, n * wt
        for ch in range(3):
            v = unit[image[north, west, ch]] * nw
            if e_in:  # grid_sample reads an out-of-image tap as 0, whose weight is 0 there anyway
                v = _fma(unit[image[north, west + 1, ch]], ne, v)
            if n != _F0:
                sv = unit[image[north + 1, west, ch]] if south_in else _F0
                sev = unit[image[north + 1, west + 1, ch]] if south_in and e_in else _F0
                v = _fma(sev, se, _fma(sv, sw, v))
            out[j, ch] = _to_byte(v)
            if keep and not valid[j]:
                kept[j, ch] = v


# ------------------------------------------------------------------------------------------- the batch


@njit(parallel=True, cache=True, fastmath=False, nogil=True)  # nogil: decode and encode threads run meanwhile
def synthesize_rows(frames, disparity, direction, bicubic, tolerance, unit, out, mirror, keep, holes, kept) -> None:
    """All rows, in parallel: ``frames (B, H, W, 3) uint8``, ``disparity (B, H, W) float32`` px in the source
    view, ``unit (256,) float32`` (byte -> [0, 1]) -> ``out (B, H, W, 3) uint8``. With ``keep``, also the hole
    mask ``holes (B, H, W) bool`` and the hole pixels' float values ``kept (B, H, W, 3) float32`` (for
    :func:`smooth_rows`); without, those two may be any size."""
    b, h, w = frames.shape[0], frames.shape[1], frames.shape[2]
    shift = np.float32(direction)
    for row in prange(b * h):
        i, y = row // h, row % h
        target = np.empty(w, np.float32)  # per-row scratch: a few kB, stays in L1/L2
        valid = np.empty(w, np.bool_)
        column = np.empty(w, np.int64)
        splat_row(disparity[i, y], direction, target, valid)
        fill_columns(target, valid, tolerance, column, mirror)
        kept_row = kept[i, y] if keep else kept[0, 0]
        if bicubic:
            _read_bicubic_row(frames[i], y, target, column, shift, unit, out[i, y], valid, keep, kept_row)
        else:
            _read_bilinear_row(frames[i], y, target, column, shift, unit, out[i, y], valid, keep, kept_row)
        if keep:
            for j in range(w):
                holes[i, y, j] = not valid[j]


@njit(parallel=True, cache=True, fastmath=False, nogil=True)
def smooth_rows(holes, kept, rows, out) -> None:
    """:func:`s3d.stereo.warp.smooth_holes` on the kernel's output: each hole pixel of ``out (B, H, W, 3) uint8``
    becomes the mean of the float values ``kept`` of the hole pixels of its column within ``rows`` rows either
    side (edge rows repeated), summed in row order."""
    b, h, w = holes.shape[0], holes.shape[1], holes.shape[2]
    for row in prange(b * h):
        i, y = row // h, row % h
        for j in range(w):
            if not holes[i, y, j]:
                continue
            for ch in range(3):
                total = _F0
                count = _F0
                for k in range(-rows, rows + 1):
                    yy = min(max(y + k, 0), h - 1)
                    if holes[i, yy, j]:
                        total += kept[i, yy, j, ch]
                        count += _F1
                out[i, y, j, ch] = _to_byte(total / count)


@njit(parallel=True, cache=True, fastmath=False, nogil=True)
def hole_rows(disparity, direction, holes, target) -> None:
    """All rows, in parallel: ``disparity (B, H, W) float32`` px in the source view -> ``holes (B, H, W) bool``
    (target pixels no source pixel lands on) and ``target (B, H, W) float32``: the target view's disparity, each
    hole given its background side's (the columns of the stretch fill)."""
    b, h, w = disparity.shape[0], disparity.shape[1], disparity.shape[2]
    for row in prange(b * h):
        i, y = row // h, row % h
        splatted = np.empty(w, np.float32)
        valid = np.empty(w, np.bool_)
        column = np.empty(w, np.int64)
        splat_row(disparity[i, y], direction, splatted, valid)
        fill_columns(splatted, valid, TOLERANCE, column, False)
        for j in range(w):
            holes[i, y, j] = not valid[j]
            target[i, y, j] = splatted[column[j]]


# --------------------------------------------------------------------------------------------- wrapper


def _check(frames: torch.Tensor, disparity: torch.Tensor, direction: int, mode: str, threads: int | None, fill: str = DEFAULT_FILL) -> None:
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be a (B, H, W, 3) uint8 tensor, got {_describe(frames)}")
    b, h, w, _ = frames.shape
    if not isinstance(disparity, torch.Tensor) or not disparity.is_floating_point() or tuple(disparity.shape) != (b, 1, h, w):
        raise ValueError(f"disparity must be a ({b}, 1, {h}, {w}) float tensor for frames {tuple(frames.shape)}, got {_describe(disparity)}")
    if frames.device.type != "cpu" or disparity.device.type != "cpu":
        raise ValueError(f"frames and disparity must be on the CPU, got {frames.device} and {disparity.device}")
    if direction not in (1, -1):
        raise ValueError(f"direction must be 1 or -1, got {direction}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or a positive int, got {threads!r}")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got '{fill}'")


def _describe(x: object) -> str:
    return f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


@contextlib.contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    """numba's thread count for this call only: the caller (convert's ``threads``) decides, not this module."""
    if threads is None:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # more than numba started is an error
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _reference(frames: torch.Tensor, disparity: torch.Tensor, direction: int, mode: str, fill: str = DEFAULT_FILL) -> torch.Tensor:
    """The torch path the kernel reproduces: ``to_tensor`` -> ``synthesize_view`` -> ``to_uint8``."""
    image = to_tensor(frames, frames.device)
    return to_uint8(synthesize_view(image, disparity.to(image.dtype), direction=direction, mode=mode, fill=fill))


def synthesize_view_uint8(
    frames: torch.Tensor, disparity: torch.Tensor, direction: int = 1, mode: str = "bicubic", threads: int | None = None, fill: str = DEFAULT_FILL
) -> torch.Tensor:
    """Render the other eye straight from uint8 frames (see :func:`s3d.stereo.warp.synthesize_view`).

    ``frames (B, H, W, 3) uint8`` on the CPU, ``disparity (B, 1, H, W)`` float in pixels, in the source view
    ``-> (B, H, W, 3) uint8``. ``direction`` +1 makes the right eye from the left, -1 the left from the
    right; ``mode`` bicubic or bilinear; ``threads`` numba threads for this call (None: numba's current
    setting); ``fill`` smooth, stretch or mirror (:data:`s3d.stereo.warp.FILLS`). The first call compiles the kernel
    (seconds; cached in ``__pycache__`` for later processes).
    Without numba this runs the torch reference, which it otherwise matches byte for byte (see the module).
    """
    _check(frames, disparity, direction, mode, threads, fill)
    if not HAVE_NUMBA:
        return _reference(frames, disparity, direction, mode, fill)
    src = frames.detach().contiguous().numpy()  # views unless the input is strided
    d = disparity.detach()[:, 0].to(torch.float32).contiguous().numpy()
    out = torch.empty(frames.shape, dtype=torch.uint8)
    if out.numel():
        with _num_threads(threads):
            smooth = fill == "smooth"
            b, h, w = d.shape
            holes = np.empty((b, h, w) if smooth else (1, 1, 1), np.bool_)
            kept = np.empty((b, h, w, 3) if smooth else (1, 1, 1, 3), np.float32)
            synthesize_rows(src, d, direction, mode == "bicubic", TOLERANCE, _UNIT, out.numpy(), fill == "mirror", smooth, holes, kept)
            if smooth and SMOOTH_ROWS:
                smooth_rows(holes, kept, SMOOTH_ROWS, out.numpy())
    return out


def holes_and_target(disparity: torch.Tensor, direction: int = 1, threads: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What a warp leaves to a fill, in one pass per row: ``disparity (B, 1, H, W)`` float32 px in the source view
    on the CPU ``-> (holes (B, 1, H, W) bool, target disparity (B, 1, H, W) float32)``, the target view's disparity
    with each hole given its background side's: the values of :func:`s3d.models.fill.fill_inputs_reference`
    without its dozen full-frame tensors (needs numba: see :data:`HAVE_NUMBA`)."""
    if disparity.device.type != "cpu" or disparity.dtype != torch.float32 or disparity.dim() != 4 or disparity.shape[1] != 1:
        raise ValueError(f"disparity must be a (B, 1, H, W) float32 tensor on the CPU, got {_describe(disparity)} on {disparity.device}")
    if direction not in (1, -1):
        raise ValueError(f"direction must be 1 or -1, got {direction}")
    d = disparity.detach()[:, 0].contiguous().numpy()
    holes = torch.empty(disparity.shape, dtype=torch.bool)
    target = torch.empty(disparity.shape, dtype=torch.float32)
    if d.size:
        with _num_threads(threads):
            hole_rows(d, direction, holes[:, 0].numpy(), target[:, 0].numpy())
    return holes, target


def warm_up() -> None:
    """Compile the kernel now (or load it from the cache) rather than inside the first timed batch."""
    if HAVE_NUMBA:
        synthesize_view_uint8(torch.zeros(1, 2, 2, 3, dtype=torch.uint8), torch.zeros(1, 1, 2, 2))
