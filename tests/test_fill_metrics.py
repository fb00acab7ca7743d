"""What evaluate.py measures of a fill (issue 24): the disoccluded pixels, the band beside them, SIoU."""

from __future__ import annotations

import math

import torch
from conftest import textured_frame

from s3d.evaluate import disocclusions, fill_metrics, masked_psnr, siou, streaks
from s3d.io.image import to_tensor
from s3d.stereo.kernel import synthesize_view_uint8


def _step(h: int = 8, w: int = 40, near: float = 6.0) -> torch.Tensor:
    """Left-view disparity: background 0 px, a near block (columns 20-29) of ``near`` px."""
    d = torch.zeros(1, 1, h, w)
    d[..., 20:30] = near
    return d


def test_disocclusions_are_where_the_near_block_uncovers_background():
    holes, band = disocclusions(_step(), band=2)
    # the block lands 6 px to the left (14-23): right of it, columns 24-29 are seen by no left pixel
    assert holes[0, 0, 0].nonzero().flatten().tolist() == [24, 25, 26, 27, 28, 29]
    assert band[0, 0, 0].nonzero().flatten().tolist() == [22, 23, 30, 31]
    assert not (holes & band).any()


def test_masked_psnr_counts_only_the_mask():
    real = torch.zeros(1, 3, 4, 4)
    pred = real.clone()
    pred[..., 0, 0] = 0.1  # one wrong pixel
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., 0, 0] = True
    assert math.isclose(masked_psnr(pred, real, mask), 20.0, abs_tol=1e-4)  # mse 0.01
    mask[..., 1, 1] = True
    assert math.isclose(masked_psnr(pred, real, mask), 10 * math.log10(1 / 0.005), abs_tol=1e-4)
    assert math.isnan(masked_psnr(pred, real, torch.zeros_like(mask)))


def test_siou_is_one_for_the_real_eye_and_lower_for_a_wrong_one():
    left = to_tensor(torch.from_numpy(textured_frame(48, 64))[None], torch.device("cpu"))
    real = left.roll(-3, dims=-1)
    assert siou(real, real, left) == 1.0
    assert siou(left, real, left) < 0.8  # the left eye again: no pixel changed, edges 3 px off


def test_fill_metrics_of_the_rendered_eye_name_every_figure():
    frames = torch.from_numpy(textured_frame(24, 64))[None]
    left = to_tensor(frames, torch.device("cpu"))
    d = _step(24, 64)
    eye = synthesize_view_uint8(frames, d, 1, "bicubic", fill="stretch").permute(0, 3, 1, 2).float() / 255
    m = fill_metrics(eye, eye, left, d)
    assert m["holes"] == 6 / 64 and m["psnr_holes"] > 90  # the real eye itself: no error
    assert m["siou"] == 1.0 and m["streaks"] == 1.0 and {"psnr", "ssim", "sharpness", "psnr_band"} <= set(m)


def test_streaks_score_a_fill_that_changes_per_row_above_one_and_the_truth_at_one():
    real = torch.full((1, 3, 16, 8), 0.5) + torch.rand(1, 3, 16, 8) * 0.02  # a calm background
    holes = torch.zeros(1, 1, 16, 8, dtype=torch.bool)
    holes[..., 2:6] = True
    striped = real.clone()
    striped[..., 2:6] = torch.rand(1, 1, 16, 1).expand(1, 3, 16, 4)  # one random colour per row: streaks
    assert streaks(real, real, holes) == 1.0 and streaks(striped, real, holes) > 5
    assert math.isnan(streaks(real, real, torch.zeros_like(holes)))


def test_the_teachers_disparity_is_kept_per_pair_images_and_weights(tmp_path, monkeypatch):
    import s3d.data.teacher as teacher_module
    from s3d.evaluate import cached_teacher_disparity

    calls = []

    def fake(net, left, right, settings):
        calls.append(1)
        return torch.full((1, 1, *left.shape[-2:]), float(len(calls)))

    monkeypatch.setattr(teacher_module, "teacher_disparity", fake)
    files = {}
    for name, content in (("l.png", b"left"), ("r.png", b"right"), ("w1", b"weights 1"), ("w2", b"weights 2")):
        files[name] = tmp_path / name
        files[name].write_bytes(content)
    left = torch.rand(1, 3, 4, 6)
    args = (files["l.png"], files["r.png"], left, left)
    first = cached_teacher_disparity(None, files["w1"], *args, str(tmp_path / "cache"))
    again = cached_teacher_disparity(None, files["w1"], *args, str(tmp_path / "cache"))
    other = cached_teacher_disparity(None, files["w2"], *args, str(tmp_path / "cache"))
    assert len(calls) == 2 and torch.equal(first, again) and float(other.max()) == 2.0  # other weights: computed again
    cached_teacher_disparity(None, files["w1"], *args, None)
    assert len(calls) == 3  # no cache folder: always computed


def test_the_oracle_fills_of_scripts_fill_oracle_know_only_what_they_claim():
    import importlib.util

    from s3d.config import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location("fill_oracle", PROJECT_ROOT / "scripts" / "fill_oracle.py")
    oracle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle)
    real = torch.rand(1, 3, 2, 10)
    eye = torch.rand(1, 3, 2, 10)
    holes = torch.zeros(1, 1, 2, 10, dtype=torch.bool)
    holes[0, 0, 0, 3:6] = holes[0, 0, 1, 7:10] = True  # a run inside row 0, a run at row 1's right end
    means = oracle.run_means(real, holes)
    assert torch.allclose(means[0, :, 0, 3:6], real[0, :, 0, 3:6].mean(-1, keepdim=True).expand(3, 3))
    assert torch.equal(means[~holes.expand(1, 3, 2, 10)], real[~holes.expand(1, 3, 2, 10)])
    real[0, :, 0, 3:6] = eye[0, :, 0, 6:7]  # row 0's truth is its right neighbour's colour: that side is taken
    sides = oracle.run_sides(eye, real, holes)
    assert torch.equal(sides[0, :, 0, 3:6], eye[0, :, 0, 6:7].expand(3, 3))
    assert torch.equal(sides[0, :, 1, 7:10], eye[0, :, 1, 6:7].expand(3, 3))  # only the left end is in the frame
    assert torch.equal(sides[~holes.expand(1, 3, 2, 10)], eye[~holes.expand(1, 3, 2, 10)])
