"""Ship an exported model in fp16 (half the size; the conversion runs it in fp32): ``python -m s3d.models.ship IN OUT``."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from s3d import cli
from s3d.errors import S3DError
from s3d.io.atomic import atomic_output


def ship(src: Path, dst: Path) -> Path:
    try:
        with safe_open(str(src), "pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # a missing file or a corrupt header: safetensors raises several types
        raise S3DError(src, f"not a readable safetensors file ({err})") from None
    state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(src)).items()}
    with atomic_output(dst, overwrite=True) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return dst


if __name__ == "__main__":
    print(cli.file_tool("python -m s3d.models.ship", (__doc__ or "").strip().splitlines()[0], ship, ("src", "dst")))
    _ = torch  # safetensors' torch API needs torch imported
