"""The DenseDepth port: the converter's mapping proven against a forward pass computed from Keras' raw arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import exit_code
from keras_densedepth import make_layers, reference_forward, write_h5
from safetensors.torch import load_file

from s3d.config import compose
from s3d.convert import convert as convert_job
from s3d.depth import build_depth
from s3d.depth.convert_densedepth import convert, main
from s3d.depth.densedepth import DenseDepth, DenseDepthConfig, DenseDepthNet
from s3d.errors import S3DError

EPS = 1.001e-5


@pytest.fixture(scope="module")
def keras_layers():
    return make_layers()


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(1)
    return rng.uniform(0, 1, (1, 64, 96, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(keras_layers, image):
    return reference_forward(keras_layers, image, EPS)


def torch_forward(state: dict, cfg: DenseDepthConfig, image: np.ndarray) -> np.ndarray:
    net = DenseDepthNet(cfg).eval()
    net.load_state_dict(state)
    with torch.no_grad():
        out = net(torch.from_numpy(image).permute(0, 3, 1, 2))
    return out.permute(0, 2, 3, 1).double().numpy()


@pytest.fixture(scope="module")
def converted(tmp_path_factory, keras_layers):
    d = tmp_path_factory.mktemp("dd")
    src = write_h5(d / "fixture.h5", keras_layers, EPS)
    dst = d / "fixture.safetensors"
    cfg = convert(src, dst)
    return dst, cfg


def test_config_read_from_the_file(converted):
    _, cfg = converted
    assert cfg == DenseDepthConfig(block_config=(2, 3, 2, 2), growth_rate=8, num_init_features=16, bn_size=2, decoder_width=32, bn_eps=EPS)


def test_converted_model_matches_reference(converted, image, reference):
    dst, cfg = converted
    out = torch_forward(load_file(str(dst)), cfg, image)
    assert out.shape == reference.shape == (1, 32, 48, 1)
    scale = np.abs(reference).max()
    assert np.abs(out - reference).max() < 1e-4 * scale


@pytest.mark.parametrize(
    "mutation",
    [
        ("transpose", "encoder.denseblock2.denselayer1.conv2.weight"),
        ("transpose", "decoder.up3.convA.weight"),
        ("swap", "encoder.denseblock1.denselayer2.norm2"),
        ("swap", "encoder.norm0"),
    ],
)
def test_reference_catches_a_wrong_mapping(converted, image, reference, mutation):
    """A converter that swapped kernel H/W or BatchNorm mean/variance would fail the comparison above."""
    dst, cfg = converted
    state = load_file(str(dst))
    kind, key = mutation
    if kind == "transpose":
        state[key] = state[key].transpose(2, 3).contiguous()
    else:
        state[f"{key}.running_mean"], state[f"{key}.running_var"] = state[f"{key}.running_var"], state[f"{key}.running_mean"]
    out = torch_forward(state, cfg, image)
    # The negation of the pass condition above (NaN from a negative 'variance' fails it too).
    assert not np.abs(out - reference).max() < 1e-4 * np.abs(reference).max()


def test_keras3_layer_names_convert_the_same(tmp_path, keras_layers, image, reference):
    layers = {k.replace("/", "_"): v for k, v in keras_layers.items()}
    cfg = convert(write_h5(tmp_path / "k3.h5", layers, EPS, keras3_names=True), tmp_path / "k3.safetensors")
    out = torch_forward(load_file(str(tmp_path / "k3.safetensors")), cfg, image)
    assert np.abs(out - reference).max() < 1e-4 * np.abs(reference).max()


def _refused(tmp_path: Path, layers, match: str):
    src = write_h5(tmp_path / "bad.h5", layers, EPS)
    with pytest.raises(S3DError, match=match) as err:
        convert(src, tmp_path / "bad.safetensors")
    assert "\n" not in str(err.value) and str(src) in str(err.value)
    assert not (tmp_path / "bad.safetensors").exists()


def test_refuses_missing_tensor(tmp_path, keras_layers):
    layers = {k: dict(v) for k, v in keras_layers.items()}
    del layers["conv3_block2_1_bn"]["moving_variance"]
    _refused(tmp_path, layers, "missing tensor for 'encoder.denseblock2.denselayer2.norm2.running_var'")


def test_refuses_extra_tensor(tmp_path, keras_layers):
    layers = {**keras_layers, "mystery_dense": {"kernel": np.zeros((4, 4), np.float32)}}
    _refused(tmp_path, layers, "unexpected layer 'mystery_dense'")


def test_refuses_wrong_shape(tmp_path, keras_layers):
    layers = {k: dict(v) for k, v in keras_layers.items()}
    layers["up2_convB"]["kernel"] = np.zeros((3, 3, 8, 9), np.float32)
    _refused(tmp_path, layers, "tensor 'up2_convB/kernel' has shape")


def test_refuses_non_hdf5(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"<html>403 Forbidden</html>")
    with pytest.raises(S3DError, match="not an HDF5 file"):
        convert(tmp_path / "x.h5", tmp_path / "x.safetensors")


def test_cli_converter(tmp_path, keras_layers, capsys):
    src = write_h5(tmp_path / "a.h5", keras_layers, EPS)
    assert main([str(src), str(tmp_path / "a.safetensors")]) == 0
    assert (tmp_path / "a.json").exists()
    assert exit_code(main, [str(tmp_path / "missing.h5"), str(tmp_path / "b.safetensors")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_backend_pre_and_post_processing(converted, image, reference):
    dst, _ = converted
    backend = DenseDepth(str(dst), resolution=None).eval()
    raw = backend.predict(torch.from_numpy(image).permute(0, 3, 1, 2))
    depth = np.clip(1000.0 / reference[..., 0], 10, 1000)
    assert np.allclose(raw[0, 0].detach().numpy(), 1.0 / depth[0], rtol=1e-3)
    near = backend(torch.from_numpy(image).permute(0, 3, 1, 2))
    assert near.shape == (1, 1, 64, 96) and float(near.min()) == 0.0 and float(near.max()) == pytest.approx(1.0)


def test_convert_with_densedepth_backend(converted, tmp_path):
    from conftest import make_video

    dst, _ = converted
    clip = make_video(tmp_path / "c.mp4", width=64, height=48, frames=3)
    out = convert_job(compose("convert", ["depth=densedepth", f"depth.weights={dst}", "depth.resolution=64", f"input={clip}", "quiet=true"]))[0]
    assert out.exists() and out.name == "c_LRF_Full_SBS.mkv"


def test_foreign_safetensors_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(S3DError, match="not DenseDepth weights"):
        build_depth(compose("convert", ["depth=densedepth", f"depth.weights={tmp_path / 'other.safetensors'}"]).depth)
