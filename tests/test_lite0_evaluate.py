"""The default model's pieces (EfficientNet-Lite0 mapping, the model, its depth backend) and evaluate.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import textured_frame
from PIL import Image
from safetensors.torch import load_file

from s3d.config import compose
from s3d.data.pairs import find_pairs
from s3d.depth import build_depth
from s3d.errors import S3DError
from s3d.evaluate import best_shift, disparity_metrics, evaluate, fit_knobs, fit_summary, fitted_view, image_metrics, shift, vertical_prior
from s3d.export import export_model
from s3d.models.convert_lite0 import convert as convert_lite0
from s3d.models.lite0 import Lite0WarpNet
from s3d.models.seed import SeedNet
from s3d.stereo import synthesize_view


def test_lite0_mapping_goes_by_order_and_checks_shapes(tmp_path: Path):
    torch.manual_seed(0)
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    # The package's names differ (lukemelas style); only order, shape and kind line up.
    theirs = {f"_layer{i:03d}.{k.rsplit('.', 1)[-1]}": v.clone() for i, (k, v) in enumerate(ref.items())}
    torch.save(theirs, tmp_path / "lite0.pth")
    out = load_file(str(convert_lite0(tmp_path / "lite0.pth", tmp_path / "lite0.safetensors")))
    assert set(out) == set(ref) and all(torch.equal(out[k], ref[k]) for k in ref)
    items = list(theirs.items())
    items[3], items[4] = items[4], items[3]  # two tensors out of order: kinds no longer line up
    torch.save(dict(items), tmp_path / "bad.pth")
    with pytest.raises(S3DError, match="does not line up"):
        convert_lite0(tmp_path / "bad.pth", tmp_path / "bad.safetensors")


def test_lite0_model_renders_at_full_resolution_from_a_small_working_size():
    torch.manual_seed(0)
    model = Lite0WarpNet().eval()
    image = torch.rand(1, 3, 90, 160)
    with torch.no_grad():
        out = model(image, work_width=64)
    assert out.pred.shape == image.shape and out.source_disparity.shape == (1, 1, 90, 160)
    assert out.disparity.abs().max() <= 0.15 * 160 + 1e-4


def test_lite0_trains_end_to_end():
    model = Lite0WarpNet()
    out = model(torch.rand(2, 3, 64, 96))
    (out.pred.mean() + out.source_disparity.mean()).backward()
    assert model.encoder.conv_stem.weight.grad is not None and model.head.weight.grad is not None


def test_lite0_as_depth_backend(tmp_path: Path):
    torch.manual_seed(0)
    path = export_model(
        Lite0WarpNet(), {"_target_": "s3d.models.lite0.Lite0WarpNet"}, {"_target_": "s3d.depth.tiny_random.TinyRandomDepth"}, tmp_path / "m.safetensors"
    )
    depth = build_depth(
        compose("convert", ["depth=s3d_lite0", f"depth.weights={path}", "depth.sha256=null", "depth.resolution=64", "depth.vertical_prior=0"]).depth
    )
    near = depth(torch.rand(2, 3, 72, 128))  # the model's own nearness, normalised per frame
    assert near.shape == (2, 1, 72, 128) and float(near.min()) == 0.0 and float(near.max()) == pytest.approx(1.0)


def test_find_pairs_accepts_the_shared_layouts(tmp_path: Path):
    img = Image.new("RGB", (8, 8))
    (tmp_path / "a").mkdir()
    img.save(tmp_path / "a" / "aloeL.jpg")
    img.save(tmp_path / "a" / "aloeR.jpg")
    (tmp_path / "b").mkdir()
    img.save(tmp_path / "b" / "moto_left.png")
    img.save(tmp_path / "b" / "moto_right.png")
    assert [(n, l.name) for n, l, _ in find_pairs(tmp_path)] == [("a", "aloeL.jpg"), ("b", "moto_left.png")]
    assert [n for n, _, _ in find_pairs(tmp_path / "b")] == ["b"]  # a folder that is itself a pair


def test_metrics():
    x = torch.rand(1, 3, 32, 48)
    m = image_metrics(x, x)
    assert m["ssim"] == pytest.approx(1.0, abs=1e-4) and m["mae"] == 0 and m["sharpness"] == pytest.approx(1.0)
    blur = torch.nn.functional.avg_pool2d(x, 5, 1, 2)
    assert image_metrics(blur, x)["sharpness"] < 0.5
    gt = np.linspace(5, 50, 100).reshape(10, 10).astype(np.float32)
    gt[0, 0] = np.nan
    d = disparity_metrics(gt * 3 + 0.0, gt)
    assert d["spearman"] == pytest.approx(1.0) and d["absrel"] == pytest.approx(0.0, abs=1e-6)
    assert disparity_metrics(-gt, gt)["spearman"] == pytest.approx(-1.0)


def test_best_shift_finds_the_true_shift():
    left = torch.from_numpy(textured_frame(40, 120)).permute(2, 0, 1)[None].float() / 255
    right = shift(left, 7)
    pred, s = best_shift(left, right)
    assert s == 7 and torch.equal(pred, right)


def test_evaluate_end_to_end(tmp_path: Path):
    pairs = tmp_path / "pairs" / "scene"
    pairs.mkdir(parents=True)
    left = textured_frame(48, 80)
    Image.fromarray(left).save(pairs / "left.png")
    Image.fromarray(np.roll(left, -4, axis=1)).save(pairs / "right.png")
    Image.fromarray(np.full((48, 80), 4, np.uint8)).save(pairs / "true_disp.png")
    torch.manual_seed(0)
    seed = export_model(
        SeedNet(width=8, depth=2, tail=1),
        {"_target_": "s3d.models.seed.SeedNet", "width": 8, "depth": 2, "tail": 1},
        {"_target_": "s3d.depth.tiny_random.TinyRandomDepth"},
        tmp_path / "seed.safetensors",
    )
    lite = export_model(
        Lite0WarpNet(), {"_target_": "s3d.models.lite0.Lite0WarpNet"}, {"_target_": "s3d.depth.tiny_random.TinyRandomDepth"}, tmp_path / "lite.safetensors"
    )
    cfg = compose(
        "evaluate",
        [
            f"pairs={tmp_path / 'pairs'}",
            f"models.s3d_lite0={lite}",
            f"models.seed={seed}",
            f"output={tmp_path / 'r.json'}",
            f"save_images={tmp_path / 'img'}",
            "work_width=64",
            "teacher=null",
        ],
    )
    result = evaluate(cfg)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert set(saved["mean"]) == {"identity", "shift", "s3d_lite0", "s3d_lite0_dibr", "s3d_lite0_fit", "seed", "yprior"}
    assert set(saved["fit"]) == {"s3d_lite0_fit", "yprior"} and saved["fit"]["yprior"]["beats_yprior"] == 0.0
    assert saved["pairs"]["scene"]["shift"]["psnr"] > saved["pairs"]["scene"]["identity"]["psnr"]
    assert {"spearman", "absrel"} <= set(saved["mean"]["s3d_lite0"]) and "spearman" not in saved["mean"]["identity"]
    assert Image.open(tmp_path / "img" / "seed" / "scene.png").size == (80, 48)
    assert result["mean"] == saved["mean"]
    with_depth = evaluate(
        compose("evaluate", [f"pairs={tmp_path / 'pairs'}", "models.s3d_lite0=null", "models.seed=null", "teacher=null", "depth=tiny_random"])
    )
    assert set(with_depth["fit"]) == {"tiny_random_fit", "yprior"}  # depth=NAME: that network's nearness, fitted
    assert "spearman" in with_depth["mean"]["tiny_random_fit"]


def test_fitted_knobs_recover_strength_and_screen_plane():
    """A right eye made through the conversion path from a known nearness with a = 12 px, b = -3 px."""
    left = torch.from_numpy(textured_frame(60, 160)).permute(2, 0, 1)[None].float() / 255
    nearness = torch.zeros(1, 1, 60, 160)
    nearness[..., 15:45, 50:110] = 1.0  # a near box on a far background
    right = synthesize_view(left, 12 * nearness - 3, 1)
    a, b = fit_knobs(left, right, nearness)
    assert a == pytest.approx(12, abs=1.0) and b == pytest.approx(-3, abs=0.7)
    pred, _ = fitted_view(left, right, nearness)
    assert image_metrics(pred, right)["psnr"] > 30
    # the vertical prior cannot explain a box: it fits worse than the true nearness, and no better than a shift does by much
    prior, _ = fitted_view(left, right, vertical_prior(left))
    assert image_metrics(prior, right)["psnr"] < image_metrics(pred, right)["psnr"] - 5


def test_fit_summary_counts_gains_and_wins():
    per_pair = {p: {"shift": {"psnr": 20.0}, "yprior": {"psnr": 20.5}, "m_fit": {"psnr": v}} for p, v in (("a", 21.0), ("b", 20.52), ("c", 19.0))}
    f = fit_summary(per_pair)
    assert f["m_fit"]["gain_over_shift_db"] == pytest.approx((1.0 + 0.52 - 1.0) / 3)
    assert f["m_fit"]["beats_yprior"] == pytest.approx(2 / 3) and f["m_fit"]["beats_yprior_by_0.05db"] == pytest.approx(1 / 3)
    assert f["yprior"]["gain_over_shift_db"] == pytest.approx(0.5) and f["m_fit"]["pairs"] == 3
