"""Prove the EfficientNet-Lite0 mapping by classifying real photos (run once by hand, before training on it).

``python scripts/lite0_imagenet_check.py LITE0.safetensors PHOTO [PHOTO ...]`` prints the top-5 ImageNet
classes of each photo for timm's ``tf_efficientnet_lite0`` (inputs in [-1, 1]) and ``efficientnet_lite0``
(ImageNet mean/std), both loaded with the converted tensors. The photos used: scikit-image 0.26.0's
``chelsea.png`` (a tabby cat) and ``coffee.png`` (a cup of coffee), taken from its wheel with ``pip download``.
"""

from __future__ import annotations

import sys

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

# ImageNet-1k indices of the classes these photos should get.
NAMES = {
    281: "tabby cat",
    282: "tiger cat",
    283: "Persian cat",
    285: "Egyptian cat",
    967: "espresso",
    968: "cup",
    504: "coffee mug",
    925: "consomme",
    809: "soup bowl",
}


def classify(weights: str, photos: list[str]) -> None:
    state = load_file(weights)
    for arch, mean, std in (("tf_efficientnet_lite0", 0.5, 0.5), ("efficientnet_lite0", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
        model = timm.create_model(arch, pretrained=False).eval()
        model.load_state_dict(state)
        for photo in photos:
            img = Image.open(photo).convert("RGB")
            s = 256 / min(img.size)
            img = img.resize((round(img.width * s), round(img.height * s)), Image.BICUBIC)
            left, top = (img.width - 224) // 2, (img.height - 224) // 2
            x = torch.from_numpy(np.asarray(img.crop((left, top, left + 224, top + 224)))).permute(2, 0, 1).float()[None] / 255
            x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
            with torch.no_grad():
                p = model(x).softmax(-1)[0]
            top5 = p.topk(5)
            print(
                f"{arch:22s} {photo.split('/')[-1]:14s} "
                + ", ".join(f"{i} {NAMES.get(int(i), '')} {v:.2f}" for v, i in zip(top5.values.tolist(), top5.indices.tolist()))
            )


if __name__ == "__main__":
    classify(sys.argv[1], sys.argv[2:])
