"""The numba eye-synthesis kernel against the torch reference it replaces on the CPU.

The reference is what the pipeline computes: ``to_tensor`` -> ``synthesize_view`` -> ``to_uint8``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import textured_frame

from s3d.io.image import to_uint8
from s3d.pipeline import to_tensor
from s3d.stereo import kernel
from s3d.stereo.fill import background_source_index
from s3d.stereo.warp import FILLS, forward_disparity, sample_rows, synthesize_view

CPU = torch.device("cpu")

# Bytes are the contract. Against the torch build this was written with (2.14.1, AVX512 grid_sample) the
# kernel matches byte for byte, since it repeats the reference's float32 steps, including the multiply-adds
# that build's compiler fused. A build or CPU that rounds those last bits differently (no FMA, another
# compiler) can move a value lying right on a rounding edge by one: measured ~1e-5 of the bytes when the
# kernel fuses nothing. Anything else (a wrong column, a wrong tap, a wrong weight) breaks these bounds.
MAX_BYTE_DIFF = 1
MAX_DIFFERING = 1e-4  # fraction of the bytes


@pytest.fixture
def k():
    pytest.importorskip("numba")
    return kernel


def reference(frames: torch.Tensor, disparity: torch.Tensor, direction: int, mode: str) -> torch.Tensor:
    return to_uint8(synthesize_view(to_tensor(frames, CPU), disparity, direction=direction, mode=mode))


def assert_bytes_match(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.shape == ref.shape and out.dtype == torch.uint8
    diff = (out.int() - ref.int()).abs()
    assert int(diff.max()) <= MAX_BYTE_DIFF
    assert float((diff > 0).float().mean()) <= MAX_DIFFERING, f"{int((diff > 0).sum())} of {diff.numel()} bytes differ"


def scene(b: int, h: int, w: int, seed: int, textured: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames and a disparity of both signs (a smooth field, +-2 % of the width) with a near box that moves
    from one frame to the next: occlusions on one side of it, disocclusions on the other."""
    g = torch.Generator().manual_seed(seed)
    if textured:
        frames = torch.from_numpy(np.stack([textured_frame(h, w, i) for i in range(b)]))
    else:
        frames = torch.randint(0, 256, (b, h, w, 3), generator=g, dtype=torch.uint8)
    field = F.interpolate(torch.rand(b, 1, 3, 4, generator=g), size=(h, w), mode="bilinear", align_corners=False)
    d = (field - 0.5) * (0.04 * w)
    for i in range(b):
        x0 = w // 5 + i * max(1, w // 9)
        d[i, :, h // 4 : 3 * h // 4, x0 : x0 + w // 4] += 0.08 * w
    return frames, d


def edge_rows(d: torch.Tensor, seed: int) -> torch.Tensor:
    """Overwrite the first rows with the awkward cases (needs ``H >= 6``)."""
    g = torch.Generator().manual_seed(seed)
    w = d.shape[-1]
    d = d.clone()
    d[0, 0, 0] = 10.0 * w  # everything lands off-screen, both directions: a row with no valid pixel
    d[0, 0, 1] = -3.7 * w  # the same, the other way
    d[0, 0, 2] = torch.where(torch.rand(w, generator=g) < 0.5, 2.5 * w, -0.5 * w)  # huge beyond the width, some
    d[0, 0, 3] = torch.randint(-4, 5, (w,), generator=g).float()  # integer: lands exactly, floor == ceil
    d[0, 0, 4] = 0.0
    d[0, 0, 5] = -(torch.rand(w, generator=g) * 6)  # negative only
    return d


def mixed_rows(h: int) -> int:
    """Rows that grid_sample reads with a (tiny) weight on a neighbour row: their normalised y does not map back
    to exactly their own index in float32."""
    rows = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(1, 1, h, 2).contiguous()
    x = torch.arange(2, dtype=torch.float32).expand(1, 1, h, 2)
    return int((sample_rows(rows, x, "bilinear")[0, 0, :, 0] != torch.arange(h)).sum())


# ---------------------------------------------------------------------------------------------- pieces


def test_byte_table_is_to_tensor():
    bytes_ = torch.arange(256, dtype=torch.uint8).view(1, 1, 256, 1).expand(1, 1, 256, 3).contiguous()
    assert np.array_equal(kernel._UNIT, to_tensor(bytes_, CPU)[0, 0, 0].numpy())


def test_grid_sample_row_is_a_horizontal_cubic():
    """What the kernel builds on: at an integer y, bicubic grid_sample (align_corners=False, border padding)
    is the 1D cubic convolution along the row (A = -0.75, taps clamped to [0, W-1])..."""
    h, w = 45, 64  # W a power of two and x in 1/64 steps: the normalised x maps back exactly
    g = torch.Generator().manual_seed(0)
    row = torch.rand(w, generator=g)
    x = torch.arange(w, dtype=torch.float32) + torch.randint(-64 * 20, 64 * 20, (1, 1, h, w), generator=g) / 64
    x[..., :3], x[..., -3:] = -3.25, w + 2.5  # off both edges: border padding
    got = sample_rows(row.expand(1, 1, h, w).contiguous(), x, "bicubic")[0, 0].double().numpy()

    pos = x[0, 0].double().numpy()
    left = np.floor(pos)
    t = pos - left
    a = -0.75
    near = lambda s: ((a + 2) * s - (a + 3)) * s * s + 1  # noqa: E731
    far = lambda s: ((a * s - 5 * a) * s + 8 * a) * s - 4 * a  # noqa: E731
    weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
    taps = [row.double().numpy()[np.clip(left + k - 1, 0, w - 1).astype(np.int64)] for k in range(4)]
    assert np.abs(got - sum(wk * tk for wk, tk in zip(weights, taps))).max() < 1e-6  # float32 rounding only


def test_grid_sample_leans_on_neighbour_rows():
    """...except in the rows whose y does not survive the trip through the normalised coordinate in float32:
    those weigh a neighbour row by up to ~1e-4 at video heights, which the kernel reproduces."""
    h, w = 720, 8
    g = torch.Generator().manual_seed(0)
    rows = torch.rand(h, 1, generator=g).expand(h, w)  # constant along x: only the rows' weights show
    x = torch.arange(w, dtype=torch.float32) + torch.rand(1, 1, h, w, generator=g) * 4
    deviation = (sample_rows(rows.expand(1, 1, h, w).contiguous(), x, "bicubic")[0, 0] - rows).abs().amax(dim=1)
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1).expand(1, 1, h, 2).contiguous()
    exact = sample_rows(ys, torch.arange(2.0).expand(1, 1, h, 2), "bilinear")[0, 0, :, 0] == torch.arange(h)
    assert 0 < int((~exact).sum()) == mixed_rows(h)
    assert deviation[exact].max() < 1e-6
    assert 1e-6 < deviation[~exact].max() < 1e-3


@pytest.mark.parametrize("direction", [1, -1])
def test_splat_row_is_forward_disparity(k, direction):
    _, d = scene(2, 24, 53, seed=1)
    d = edge_rows(d, seed=1)
    target, valid = forward_disparity(d, direction)
    rows = d[:, 0].reshape(-1, d.shape[-1]).numpy()
    got_t, got_v = np.empty_like(rows), np.empty(rows.shape, dtype=bool)
    for r in range(len(rows)):
        k.splat_row(rows[r], direction, got_t[r], got_v[r])
    assert np.array_equal(got_v, valid[:, 0].reshape(rows.shape).numpy())
    assert np.array_equal(got_t, target[:, 0].reshape(rows.shape).numpy())
    assert not got_v[0].any() and not got_v[1].any()  # the off-screen rows


def test_fill_columns_is_background_source_index(k):
    g = torch.Generator().manual_seed(2)
    n, w = 400, 41
    valid = torch.rand(n, w, generator=g) < torch.rand(n, 1, generator=g)  # from no valid pixel to all valid
    valid[0], valid[1] = False, True
    # quarter-pixel steps: ties between the two sides, and reflections exactly at the tolerance
    target = torch.where(valid, torch.randint(-8, 9, (n, w), generator=g).float() / 4, torch.zeros(()))
    expected = background_source_index(target.view(1, 1, n, w), valid.view(1, 1, n, w))[0, 0].numpy()
    got = np.empty((n, w), dtype=np.int64)
    t, v = target.numpy(), valid.numpy()
    for r in range(n):
        k.fill_columns(t[r], v[r], kernel.TOLERANCE, got[r])
    assert np.array_equal(got, expected)
    assert np.array_equal(got[0], np.arange(w))


# ------------------------------------------------------------------------------------------------ bytes


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize(("b", "h", "w", "textured"), [(3, 45, 61, False), (2, 33, 128, True), (1, 72, 37, False)])
def test_bytes_match_reference(k, mode, direction, b, h, w, textured):
    assert mixed_rows(h) > 0  # the neighbour-row path is exercised
    frames, d = scene(b, h, w, seed=h + w, textured=textured)
    d = edge_rows(d, seed=w)
    assert_bytes_match(k.synthesize_view_uint8(frames, d, direction, mode), reference(frames, d, direction, mode))


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_every_fill_matches_its_reference_and_they_differ_only_in_the_holes(k, direction, mode):
    frames, d = scene(2, 33, 128, seed=9, textured=True)
    eyes = {fill: k.synthesize_view_uint8(frames, d, direction, mode, fill=fill) for fill in FILLS}
    for fill, eye in eyes.items():
        assert_bytes_match(eye, kernel._reference(frames, d, direction, mode, fill))
    _, valid = forward_disparity(d, direction)
    holes = ~valid[:, 0, :, :, None].expand_as(eyes["mirror"])
    for fill in ("stretch", "smooth"):  # only the holes differ
        assert torch.equal(eyes[fill][~holes], eyes["mirror"][~holes]) and not torch.equal(eyes[fill][holes], eyes["mirror"][holes])
    vertical = {f: float((eyes[f][:, 1:].int() - eyes[f][:, :-1].int()).abs()[holes[:, 1:] & holes[:, :-1]].float().mean()) for f in FILLS}
    assert vertical["smooth"] < 0.7 * vertical["stretch"]  # fewer streaks: the rows of a hole agree more
    with pytest.raises(ValueError, match="fill must be one of smooth, stretch, mirror"):
        k.synthesize_view_uint8(frames, d, direction, "bicubic", fill="smear")


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_zero_disparity_returns_the_source(k, mode):
    frames, _ = scene(2, 9, 17, seed=3)
    out = k.synthesize_view_uint8(frames, torch.zeros(2, 1, 9, 17), 1, mode)
    assert torch.equal(out, frames)


def test_threads_and_strided_input(k):
    import numba

    k.warm_up()
    frames, d = scene(2, 20, 31, seed=4)
    ref = reference(frames, d, 1, "bicubic")
    before = numba.get_num_threads()
    assert torch.equal(k.synthesize_view_uint8(frames, d, 1, "bicubic", threads=1), k.synthesize_view_uint8(frames, d, 1, "bicubic"))
    assert numba.get_num_threads() == before  # the setting was for that call only
    strided = frames.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)  # (B, H, W, 3) over CHW memory
    assert_bytes_match(k.synthesize_view_uint8(strided, d, 1, "bicubic", threads=64), ref)


@pytest.mark.parametrize(
    ("frames", "disparity", "kwargs", "message"),
    [
        (torch.zeros(1, 4, 5, 3), torch.zeros(1, 1, 4, 5), {}, "uint8"),
        (torch.zeros(1, 3, 4, 5, dtype=torch.uint8), torch.zeros(1, 1, 3, 4), {}, r"\(B, H, W, 3\)"),
        (torch.zeros(1, 4, 5, 3, dtype=torch.uint8), torch.zeros(1, 4, 5), {}, r"\(1, 1, 4, 5\)"),
        (torch.zeros(2, 4, 5, 3, dtype=torch.uint8), torch.zeros(1, 1, 4, 5), {}, r"\(2, 1, 4, 5\)"),
        (torch.zeros(1, 4, 5, 3, dtype=torch.uint8), torch.zeros(1, 1, 4, 5, dtype=torch.int32), {}, "float"),
        (torch.zeros(1, 4, 5, 3, dtype=torch.uint8), torch.zeros(1, 1, 4, 5), {"direction": 0}, "direction"),
        (torch.zeros(1, 4, 5, 3, dtype=torch.uint8), torch.zeros(1, 1, 4, 5), {"mode": "nearest"}, "mode"),
        (torch.zeros(1, 4, 5, 3, dtype=torch.uint8), torch.zeros(1, 1, 4, 5), {"threads": 0}, "threads"),
    ],
)
def test_bad_arguments_are_refused(frames, disparity, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kernel.synthesize_view_uint8(frames, disparity, **kwargs)


def test_without_numba_it_is_the_reference(monkeypatch):
    assert isinstance(kernel.HAVE_NUMBA, bool)
    monkeypatch.setattr(kernel, "HAVE_NUMBA", False)
    frames, d = scene(2, 12, 23, seed=5)
    for direction, mode in ((1, "bicubic"), (-1, "bilinear")):
        assert torch.equal(kernel.synthesize_view_uint8(frames, d, direction, mode), reference(frames, d, direction, mode))
