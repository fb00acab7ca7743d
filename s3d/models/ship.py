"""Ship an exported model in fp16 (half the size; the conversion runs it in fp32): ``python -m s3d.models.ship IN OUT``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from s3d.io.atomic import atomic_output


def ship(src: Path, dst: Path) -> Path:
    with safe_open(str(src), "pt") as f:
        meta = f.metadata() or {}
    state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(src)).items()}
    with atomic_output(dst, overwrite=True) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return dst


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(ship(Path(sys.argv[1]), Path(sys.argv[2])))
    _ = torch  # safetensors' torch API needs torch imported
