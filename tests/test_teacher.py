"""Teacher pseudo-labels (s3d.data.teacher) and the scale-and-shift-invariant loss that learns from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import s3d.models.psmnet as psmnet
from s3d.data.pairs import StereoPairs
from s3d.data.teacher import LabelSettings, TeacherLabels, lr_consistent, resize_labels, teacher_labels, teacher_size
from s3d.errors import S3DError
from s3d.losses import ViewLoss, ssi_loss
from s3d.models.common import ViewPrediction


def test_teacher_size_keeps_aspect_within_bounds():
    s = LabelSettings(max_width=640, min_size=256)
    assert teacher_size(720, 1280, s) == (360, 640)
    assert teacher_size(200, 300, s) == (256, 384)  # too small for the pyramid: scaled up
    assert teacher_size(300, 400, s) == (300, 400)


def test_lr_consistency_keeps_agreeing_pixels_only():
    d_left = torch.full((1, 1, 4, 12), 3.0)
    d_right = torch.full((1, 1, 4, 12), 3.0)
    ok = lr_consistent(d_left, d_right, 1, 1.0)
    assert not ok[..., :3].any() and ok[..., 3:].all()  # left x < 3 sees nothing of the right eye
    ok_r = lr_consistent(d_right, d_left, -1, 1.0)
    assert ok_r[..., :9].all() and not ok_r[..., 9:].any()
    d_right[..., 5:8] = 7.0  # the right view disagrees where left pixels 8-10 land
    ok = lr_consistent(d_left, d_right, 1, 1.0)
    assert not ok[..., 8:11].any() and ok[..., 3:8].all() and ok[..., 11:].all()


def test_resize_labels_scales_values_and_never_blends_holes():
    d = torch.tensor([[[[2.0, float("nan"), 4.0, 6.0]]]])
    up = resize_labels(d, (2, 8))
    assert up.shape == (1, 1, 2, 8)
    assert torch.isnan(up[..., 2:4]).all() and torch.equal(up[0, 0, 0, [0, 1, 4, 5, 6, 7]], torch.tensor([4.0, 4, 8, 8, 12, 12]))


def fake_teacher(monkeypatch, disparity: float = 4.0):
    """PSMNet replaced by a constant disparity (at the teacher's size), to test what is built around it."""
    calls = []

    def fake(net, left, right):
        calls.append(tuple(left.shape))
        return torch.full((left.shape[0], 1, *left.shape[-2:]), disparity)

    monkeypatch.setattr(psmnet, "psmnet_disparity", fake)
    return calls


def test_labels_are_in_pixels_of_the_input_with_both_views(monkeypatch):
    calls = fake_teacher(monkeypatch)
    left, right = torch.rand(1, 3, 360, 1280), torch.rand(1, 3, 360, 1280)
    label_left, label_right = teacher_labels(None, left, right, LabelSettings(max_width=640))
    assert calls == [(1, 3, 256, 910)] * 2  # 256 high at least, aspect kept; left view, then the mirrored pair
    assert label_left.shape == label_right.shape == (1, 1, 360, 1280)
    finite = label_left[torch.isfinite(label_left)]
    assert torch.allclose(finite, torch.tensor(4.0 * 1280 / 910))
    assert torch.isnan(label_left[..., :4]).all() and torch.isfinite(label_left[..., 10:]).all()  # no match left of the border
    assert torch.isnan(label_right[..., -4:]).all() and torch.isfinite(label_right[..., :-10]).all()


def _write_pair(folder: Path, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "left.png", folder / "right.png"
    for p in paths:
        Image.fromarray(rng.integers(0, 255, (260, 300, 3), dtype=np.uint8)).save(p)
    return paths


def test_labels_are_cached_by_content(tmp_path: Path, monkeypatch):
    fake_teacher(monkeypatch)
    weights = tmp_path / "psmnet.safetensors"
    save_file({"x": torch.zeros(1)}, str(weights))
    monkeypatch.setattr(psmnet, "load_psmnet", lambda path, device="cpu": None)
    left, right = _write_pair(tmp_path / "a", 0)
    teacher = TeacherLabels(weights, tmp_path / "cache")
    first = teacher.labels(left, right)
    again = teacher.labels(left, right)
    assert (teacher.computed, teacher.reused) == (1, 1)
    assert torch.equal(first[0].nan_to_num(-1), again[0].nan_to_num(-1)) and first[0].shape == (1, 260, 300)
    Image.fromarray(np.zeros((260, 300, 3), np.uint8)).save(right)  # another picture under the same name
    teacher.labels(left, right)
    assert teacher.computed == 2
    other = TeacherLabels(weights, tmp_path / "cache", LabelSettings(tolerance=0.5))  # other settings: relabelled
    other.labels(left, right)
    assert other.computed == 1
    with pytest.raises(S3DError, match="missing weights of the PSMNet stereo teacher"):
        TeacherLabels(tmp_path / "nope.safetensors", tmp_path / "cache")


def test_teacher_maps_follow_the_crop_and_the_flip(tmp_path: Path, monkeypatch):
    fake_teacher(monkeypatch)

    class Ramp:  # left label = column index, right label = minus it: a flip must swap and mirror them
        def labels(self, left, right):
            x = torch.arange(300.0).expand(1, 260, 300)
            return x, -x

    pairs = [("a", *_write_pair(tmp_path / "a", 1))]
    data = StereoPairs(pairs, (64, 96), train=True, teacher=Ramp())
    seen_flip = seen_plain = False
    for _ in range(40):
        item = data[0]
        tl, tr = item["teacher_left"], item["teacher_right"]
        if tl[0, 0, 0] >= 0:  # not flipped: left = increasing ramp
            seen_plain = True
            assert torch.all(tl[..., 1:] - tl[..., :-1] == 1) and torch.equal(tr, -tl)
        else:  # flipped: the new left is the mirrored right label
            seen_flip = True
            assert torch.all(tl[..., 1:] - tl[..., :-1] == 1) and torch.equal(tr, -tl) and tl[0, 0, 0] <= -95
    assert seen_flip and seen_plain


def test_ssi_loss_ignores_scale_shift_and_unknown_pixels():
    t = torch.rand(2, 1, 16, 16) * 50
    t[0, 0, :4] = float("nan")
    assert float(ssi_loss(0.002 * t.nan_to_num(0) + 0.1, t)) < 1e-5
    assert float(ssi_loss(torch.rand(2, 1, 16, 16), t)) > 0.3
    assert float(ssi_loss(-t.nan_to_num(0), t)) > 1.0  # the wrong order of near and far costs most
    spikes = t.clone()
    spikes[1, 0, 0, :3] = 1e6  # a few spikes do not set the teacher's scale
    assert float(ssi_loss(t.nan_to_num(0), spikes)) < 0.05
    assert float(ssi_loss(torch.rand(1, 1, 8, 8), torch.full((1, 1, 8, 8), float("nan")))) == 0.0


def test_ssi_loss_gradcheck():
    t = torch.rand(1, 1, 5, 6, dtype=torch.float64)
    t[0, 0, 0, :2] = float("nan")
    p = torch.rand(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: ssi_loss(x, t, clip=0.0), (p,))


def test_view_loss_uses_the_teacher_term_on_both_views():
    loss = ViewLoss(mse=0, ssim=0, teacher=1.0)
    t = torch.rand(1, 1, 8, 8)
    out = ViewPrediction(torch.rand(1, 3, 8, 8), disparity=t * 3, source_disparity=torch.rand(1, 1, 8, 8))
    total, terms = loss(out, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), None, {"left": t, "right": t})
    assert set(terms) == {"teacher"} and float(total) > 0.1  # the right view fits exactly; the left does not
    out.source_disparity = t + 1
    assert float(loss(out, torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), None, {"left": t, "right": t})[0]) < 1e-5
