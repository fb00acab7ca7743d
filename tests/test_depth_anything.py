"""Depth Anything V2 Small: the network, the converter from the Hugging Face layout, the downloader, the backend.

The fast tests use a fixture in the published file's layout (every name and shape as ``transformers``
writes the file, recorded by ``tests/hf_depth_anything.py``; random values); the slow parity tests run
``transformers`` itself (``make test-all`` installs it).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import hf_depth_anything
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SAMPLE, SHARED_DATA, exit_code, make_video
from hf_depth_anything import published_layout
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from s3d.config import PROJECT_ROOT, compose
from s3d.convert import convert as convert_job
from s3d.depth.depth_anything import DepthAnythingNet, DepthAnythingV2, DepthAnythingV2Small
from s3d.depth.fetch_depth_anything import (
    canonical_name,
    convert,
    convert_hf_state,
    hf_shapes,
    main,
)
from s3d.errors import S3DError

PHOTO = SHARED_DATA / "stereo_pairs" / "mpo_pillow" / "frozenpond" / "left.png"  # a real 640 x 480 photo


def random_hf_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict in the published file's layout (every name and shape), with random values."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=g) * 0.02 for name, shape in published_layout().items()}


@pytest.mark.parametrize("variant", ["small", "base", "large"])
def test_the_converters_map_is_the_layout_transformers_writes(variant: str):
    """The converter's inverse map against the record of the layout ``transformers`` gives each variant."""
    assert hf_shapes(variant) == published_layout(variant)
    if variant != "small":  # a file of another size is refused by name, not loaded
        with pytest.raises(S3DError, match=f"not Depth Anything V2 {variant.title()}"):
            convert_hf_state(random_hf_state(), "small.safetensors", variant)


@pytest.fixture(scope="module")
def hf_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hf") / "model.safetensors"
    save_file(random_hf_state(), str(path))
    return path


@pytest.fixture(scope="module")
def hf_state(hf_file) -> dict[str, torch.Tensor]:
    return load_file(str(hf_file))


@pytest.fixture(scope="module")
def converted(hf_file, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("w") / "depth_anything_v2_small.safetensors"
    convert(hf_file, dst)
    return dst


# --- the network and the backend -----------------------------------------------------------------


def test_network_shapes_on_random_weights():
    net = DepthAnythingNet().eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 70, 98))  # a 5 x 7 patch grid: the position embeddings are resized
    assert out.shape == (2, 1, 70, 98) and float(out.min()) >= 0.0  # the head ends in a ReLU
    with pytest.raises(ValueError, match="multiples of 14"):
        net(torch.randn(1, 3, 70, 99))


def test_backend_runs_at_the_original_input_size(converted):
    backend = DepthAnythingV2Small(str(converted))
    assert backend.working_size(480, 640) == (518, 686)
    assert backend.working_size(1080, 1920) == (518, 924)
    assert backend.working_size(1920, 1080) == (924, 518)
    assert backend.working_size(48, 64) == (518, 686)  # small frames are scaled up, as the original does
    backend.resolution = 500  # not a multiple of 14: the nearest multiple, never below it
    assert backend.working_size(500, 800) == (504, 798)
    backend.resolution = None
    assert backend.working_size(50, 71) == (56, 70)


def test_backend_is_nearness_without_inversion_and_normalises_like_imagenet(converted):
    """The network's output (inverse depth) goes through as nearness: larger output = larger nearness."""
    backend = DepthAnythingV2Small(str(converted), resolution=28).eval()
    seen = {}

    def ramp(x):
        seen["x"] = x
        return torch.linspace(0, 5, x.shape[-1]).expand(x.shape[0], 1, *x.shape[-2:])

    backend.net.forward = ramp
    near = backend(torch.full((1, 3, 48, 64), 0.5))
    assert near.shape == (1, 1, 48, 64) and float(near.min()) == 0.0 and float(near.max()) == pytest.approx(1.0)
    assert torch.all(near[..., 1:] >= near[..., :-1]) and float(near[0, 0, 0, -1]) > float(near[0, 0, 0, 0])
    assert seen["x"].shape == (1, 3, 28, 42)
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(seen["x"][0, :, 0, 0], expected)


def test_backend_with_random_weights_gives_per_frame_nearness(converted):
    backend = DepthAnythingV2Small(str(converted), resolution=28).eval()
    near = backend(torch.rand(2, 3, 48, 64))
    assert near.shape == (2, 1, 48, 64) and float(near.min()) >= 0.0 and float(near.max()) <= 1.0


# --- the converter -------------------------------------------------------------------------------


def test_converter_maps_names_and_fuses_qkv_in_order(hf_state, converted):
    out = load_file(str(converted))
    layer = "backbone.encoder.layer.4.attention.attention."
    qkv = out["encoder.blocks.4.attn.qkv.weight"]
    assert torch.equal(qkv, torch.cat([hf_state[layer + p + ".weight"] for p in ("query", "key", "value")]))
    assert torch.equal(out["encoder.blocks.4.attn.qkv.bias"][384:768], hf_state[layer + "key.bias"])
    assert torch.equal(out["encoder.blocks.7.ls2.gamma"], hf_state["backbone.encoder.layer.7.layer_scale2.lambda1"])
    # The port's fusion layer 0 is the deepest one, the original's refinenet4.
    assert torch.equal(out["head.refinenet4.out_conv.weight"], hf_state["neck.fusion_stage.layers.0.projection.weight"])
    assert torch.equal(out["head.layer1_rn.weight"], hf_state["neck.convs.0.weight"])
    assert torch.equal(out["head.output_conv2.2.bias"], hf_state["head.conv3.bias"])
    assert "backbone.embeddings.mask_token" in hf_state and not any("mask" in k for k in out)


def test_converter_accepts_the_transformers_5_attention_names(hf_state):
    renamed = {
        k.replace("attention.attention.query.", "attention.q_proj.").replace("attention.output.dense.", "attention.o_proj."): v for k, v in hf_state.items()
    }
    a, b = convert_hf_state(hf_state), convert_hf_state(renamed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda s: s.pop("neck.convs.2.weight"), "missing tensor 'neck.convs.2.weight' (1 missing in all)"),
        (lambda s: s.__setitem__("neck.convs.4.weight", torch.zeros(64, 384, 3, 3)), "unexpected tensor 'neck.convs.4.weight'"),
        (
            lambda s: s.__setitem__("backbone.encoder.layer.3.attention.attention.key.weight", torch.zeros(384, 383)),
            "tensor 'backbone.encoder.layer.3.attention.attention.key.weight' has shape (384, 383), expected (384, 384)",
        ),
        (lambda s: s.__setitem__("backbone.embeddings.mask_token", torch.zeros(1, 385)), "tensor 'backbone.embeddings.mask_token' has shape"),
    ],
    ids=["missing", "extra", "wrong-shape", "wrong-shape-unused"],
)
def test_converter_refuses_a_tensor_by_name(hf_state, change, match):
    state = dict(hf_state)
    change(state)
    with pytest.raises(S3DError, match=re.escape(match)) as err:
        convert_hf_state(state, "model.safetensors")
    assert "\n" not in str(err.value) and str(err.value).startswith("model.safetensors: ")


def test_convert_refuses_a_file_that_is_not_safetensors(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"<html>404</html>")
    with pytest.raises(S3DError, match="not a readable safetensors file"):
        convert(tmp_path / "x.safetensors", tmp_path / "y.safetensors")
    assert not (tmp_path / "y.safetensors").exists()


# --- make weights (the fetch itself is tested against a Hub stand-in: tests/test_auto_depth.py) ------


def test_make_weights_file_converts_and_records_both_sha256(hf_file, tmp_path, converted):
    out = tmp_path / "w" / "da.safetensors"
    assert main(["--file", str(hf_file), "--out", str(out), "--quiet"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["source_sha256"] == hashlib.sha256(hf_file.read_bytes()).hexdigest()
    assert meta["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["s3d"])["source_sha256"] == meta["source_sha256"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["da.json", "da.safetensors"]  # nothing half-written left
    got, want = load_file(str(out)), load_file(str(converted))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_make_weights_refuses_a_page_or_another_size_in_one_line(hf_file, tmp_path, capsys):
    page = tmp_path / "page.safetensors"
    page.write_bytes(b"<html>moved</html>")
    out = tmp_path / "out" / "da.safetensors"
    for args, problem in (([str(page)], "not a readable safetensors file"), ([str(hf_file), "--variant", "large"], "not Depth Anything V2 Large")):
        assert exit_code(main, ["--file", args[0], *args[1:], "--out", str(out), "--quiet"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and problem in err
        assert not out.exists()


# --- in the conversion pipeline ------------------------------------------------------------------


def test_convert_py_without_weights_names_the_make_target(tmp_path):
    clip = make_video(tmp_path / "c.mp4", frames=2, audio=False)
    cmd = [
        sys.executable,
        str(PROJECT_ROOT / "convert.py"),
        f"input={clip}",
        f"output={tmp_path / 'o.mkv'}",
        "depth=depth_anything_v2_small",
        f"weights_dir={tmp_path}",
    ]
    r = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing weights for depth backend 'depth_anything_v2_small'" in lines[0]
    assert lines[0].endswith("get them with: make weights depth=depth_anything_v2_small")
    assert not (tmp_path / "o.mkv").exists()


def test_convert_a_video_with_the_backend(converted, tmp_path):
    clip = make_video(tmp_path / "c.mp4", width=64, height=48, frames=3)
    overrides = ["depth=depth_anything_v2_small", f"depth.weights={converted}", "depth.resolution=28", f"input={clip}", "quiet=true"]
    out = convert_job(compose("convert", overrides))[0]
    assert out.exists() and out.name == "c_LRF_Full_SBS.mkv"


# --- parity with transformers (slow) ---------------------------------------------------------------


def real_photo() -> torch.Tensor:
    """``(1, 3, H, W)`` in ``[0, 1]``: a real photo from ../shared/data, else the bundled sample's first frame."""
    if PHOTO.is_file():
        rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    else:
        from s3d.data.films import read_frames_at  # only without the shared data

        rgb = read_frames_at(SAMPLE, [0])[0]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255


def hf_model(variant: str = "small"):
    pytest.importorskip("transformers")
    return hf_depth_anything.hf_model(variant)


@pytest.fixture(scope="module")
def parity_pair(tmp_path_factory):
    """The random transformers model and our backend loaded from the file transformers writes for it."""
    model = hf_model("small")
    assert {canonical_name(k): tuple(v.shape) for k, v in model.state_dict().items()} == hf_shapes()
    d = tmp_path_factory.mktemp("parity")
    model.save_pretrained(d / "hf")  # the file as transformers writes (and the Hub serves) it
    convert(d / "hf" / "model.safetensors", d / "da.safetensors")
    return model, DepthAnythingV2Small(str(d / "da.safetensors")).eval()


@pytest.mark.slow
@pytest.mark.parametrize("square", [False, True], ids=["518x686", "518x518"])
def test_parity_with_transformers_on_a_real_photo(parity_pair, square):
    """At 518 x 686 the position embeddings are resized; at 518 x 518 both use them as stored."""
    model, backend = parity_pair
    photo = real_photo()
    size = backend.working_size(*photo.shape[-2:])
    assert size[0] == 518 and size[1] % 14 == 0 and size[1] > 518
    x = F.interpolate(photo, size=size, mode="bilinear", align_corners=False, antialias=True)
    if square:
        x = x[..., (size[1] - 518) // 2 :][..., :518]
    with torch.inference_mode():
        ours = backend.predict(x)[:, 0]
        ref = model(pixel_values=(x - backend.mean) / backend.std).predicted_depth
    span = float(ref.max() - ref.min())
    diff = float((ours - ref).abs().max())
    print(f"\nparity at {x.shape[-2]}x{x.shape[-1]}: largest |difference| {diff:.3g}, output range {span:.3g}, relative {diff / span:.3g}")
    assert float((ref > 0).float().mean()) > 0.5 and span > 0  # the comparison is not between two blank maps
    assert diff <= 1e-4 * span


@pytest.mark.slow
def test_parity_catches_a_wrong_mapping(parity_pair):
    """Negative control: q and k swapped in one block, or two fusion blocks swapped, fail the comparison above."""
    model, backend = parity_pair
    x = F.interpolate(real_photo(), size=(518, 686), mode="bilinear", align_corners=False, antialias=True)
    with torch.inference_mode():
        ref = model(pixel_values=(x - backend.mean) / backend.std).predicted_depth
    state = backend.net.state_dict()
    qkv = state["encoder.blocks.3.attn.qkv.weight"]
    swapped_qk = {"encoder.blocks.3.attn.qkv.weight": torch.cat([qkv[384:768], qkv[:384], qkv[768:]])}
    swapped_fusion = {k.replace("refinenet1", "refinenet2"): v for k, v in state.items() if ".refinenet1." in k}
    swapped_fusion.update({k.replace("refinenet2", "refinenet1"): v for k, v in state.items() if ".refinenet2." in k})
    for mutation in (swapped_qk, swapped_fusion):
        net = DepthAnythingNet(init=False).eval()
        net.load_state_dict({**state, **mutation})
        with torch.inference_mode():
            diff = float((net((x - backend.mean) / backend.std)[:, 0] - ref).abs().max())
        assert not diff <= 1e-4 * float(ref.max() - ref.min())


@pytest.mark.slow
@pytest.mark.parametrize("variant,size", [("base", 518), ("large", 266)])
def test_parity_of_base_and_large_with_transformers(tmp_path, variant: str, size: int):
    """Base and Large as Small: transformers' model with random weights, saved, converted, compared (Large at
    266 x 266, 19 x 19 patches with resized position embeddings, to keep its 335M parameters cheap)."""
    model = hf_model(variant)
    model.save_pretrained(tmp_path / "hf")
    convert(tmp_path / "hf" / "model.safetensors", tmp_path / "da.safetensors", variant=variant)
    backend = DepthAnythingV2(str(tmp_path / "da.safetensors"), variant).eval()
    x = F.interpolate(real_photo(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    with torch.inference_mode():
        ours = backend.predict(x)[:, 0]
        ref = model(pixel_values=(x - backend.mean) / backend.std).predicted_depth
    span, diff = float(ref.max() - ref.min()), float((ours - ref).abs().max())
    print(f"\n{variant} parity at {size}x{size}: largest |difference| {diff:.3g}, output range {span:.3g}")
    assert span > 0 and diff <= 1e-4 * span
