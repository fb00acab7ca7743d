from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from s3d.config import CONF_DIR, compose
from s3d.depth import build_depth, normalize_nearness
from s3d.depth.densedepth import DenseDepthConfig, DenseDepthNet
from s3d.depth.tiny_random import TinyRandomDepth, save_random_weights
from s3d.errors import MissingWeightsError, S3DError


def test_tiny_backend_contract():
    depth = build_depth(compose("convert", ["depth=tiny_random"]).depth)
    out = depth(torch.rand(2, 3, 50, 70))
    assert out.shape == (2, 1, 50, 70)
    assert out.amin(dim=(1, 2, 3)).tolist() == pytest.approx([0, 0]) and out.amax(dim=(1, 2, 3)).tolist() == pytest.approx([1, 1])
    assert not any(p.requires_grad for p in depth.parameters())


def test_normalize_flat_frame_is_zero():
    assert normalize_nearness(torch.full((1, 1, 3, 3), 7.0)).abs().max() == 0


def test_weights_lookup_loads_a_saved_file(tmp_path: Path):
    path = tmp_path / "tiny.safetensors"
    save_random_weights(str(path), seed=3)
    loaded = build_depth(compose("convert", ["depth=tiny_random", f"depth.weights={path}"]).depth)
    assert torch.equal(loaded.net[0].weight, TinyRandomDepth(seed=3).net[0].weight)
    assert not torch.equal(loaded.net[0].weight, TinyRandomDepth(seed=0).net[0].weight)


def test_missing_weights_is_one_line_naming_file_and_command(tmp_path: Path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(MissingWeightsError) as err:
        build_depth(compose("convert", ["depth=densedepth", f"depth.weights={missing}"]).depth)
    msg = str(err.value)
    assert "\n" not in msg and str(missing) in msg and "make weights" in msg


def test_wrong_shape_weights_refused_by_name(tmp_path: Path):
    state = TinyRandomDepth().state_dict()
    state["net.0.weight"] = torch.zeros(8, 3, 5, 5)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(S3DError, match="net.0.weight"):
        TinyRandomDepth(weights=str(tmp_path / "bad.safetensors"))


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF_DIR / "depth").glob("*.yaml")))
def test_every_depth_config_composes(name):
    depth = compose("convert", [f"depth={name}"]).depth
    for cfg in (depth.prefer, depth.fallback) if name == "auto" else (depth,):  # auto: the two it chooses from
        assert cfg._target_.startswith("s3d.depth.") and cfg.title and cfg.license  # what the depth line names


def test_densedepth_shapes_and_config_read_from_weights():
    cfg = DenseDepthConfig(block_config=(2, 2, 2, 2), growth_rate=8, num_init_features=16, bn_size=2, decoder_width=32)
    net = DenseDepthNet(cfg).eval()
    assert DenseDepthConfig.from_state_dict(net.state_dict()) == cfg
    with torch.no_grad():
        assert net(torch.rand(1, 3, 64, 96)).shape == (1, 1, 32, 48)


def test_the_vertical_prior_blends_rows_into_any_backend():
    from s3d.depth.base import add_vertical_prior

    near = torch.rand(2, 1, 5, 7)
    assert add_vertical_prior(near, 0.0) is near
    rows = add_vertical_prior(near, 1.0)
    assert torch.allclose(rows[0, 0, :, 3], torch.linspace(0, 1, 5)) and torch.equal(rows[0], rows[1])  # top far, bottom near
    half = add_vertical_prior(near, 0.25)
    assert torch.allclose(half, 0.75 * near + 0.25 * rows) and half.min() >= 0 and half.max() <= 1
    with pytest.raises(ValueError, match="between 0 and 1"):
        add_vertical_prior(near, 1.5)
    x = torch.rand(1, 3, 40, 64)
    plain = build_depth(compose("convert", ["depth=tiny_random"]).depth)
    blended = build_depth(compose("convert", ["depth=tiny_random", "depth.vertical_prior=0.5"]).depth)
    assert plain.vertical_prior == 0 and blended.vertical_prior == 0.5
    assert torch.allclose(blended(x), add_vertical_prior(plain(x), 0.5), atol=1e-6)
    assert compose("convert", ["depth=s3d_lite0"]).depth.vertical_prior == 0.8  # the bundled model's, fitted by scripts/prior_blend_fit.py
    assert compose("convert", []).depth.fallback.vertical_prior == 0.8  # and so when depth=auto falls back to it
