"""The shipped learned fill against the `smooth` fill it starts from (an untrained FillNet: its head is zero), on
the validation patches of conf/data/fill_patches.yaml: PSNR of the squared error pooled over every patch, and over
every hole pixel. python scripts/fill_val.py [WEIGHTS] (weights/MODEL_CARD.md quotes it)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra.utils import instantiate

from s3d.config import PROJECT_ROOT, compose
from s3d.export import load_fill_net
from s3d.models.fill import FillNet


def pooled_psnr(net: FillNet, loader) -> tuple[float, float]:
    whole = holes = 0.0
    n = n_holes = 0
    with torch.inference_mode():
        for b in loader:
            err = (net(b["warped"], b["holes"], b["disparity"]).pred - b["target"]) ** 2
            whole, n = whole + float(err.mean((1, 2, 3)).sum()), n + err.shape[0]
            inside = err.mean(1, keepdim=True)[b["holes"]]
            holes, n_holes = holes + float(inside.sum()), n_holes + inside.numel()
    return tuple(float(10 * torch.log10(torch.tensor(count / total))) for total, count in ((whole, n), (holes, n_holes)))


def main(argv: list[str]) -> int:
    weights = Path(argv[0]) if argv else PROJECT_ROOT / "weights" / "s3d_fill.safetensors"
    data = instantiate(compose("train", ["model=fill"]).data)
    data.setup()
    print(f"{len(data.val_set)} validation patches")
    for name, net in (("smooth (untrained)", FillNet().eval()), (str(weights), load_fill_net(weights, torch.device("cpu")))):
        patch, hole = pooled_psnr(net, data.val_dataloader())
        print(f"{name}: PSNR {patch:.2f} dB over the patches, {hole:.2f} dB over their holes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
