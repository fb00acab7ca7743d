"""Check the DenseDepth port against Keras itself (run once by hand; tensorflow is never a project dependency).

Two phases, because TensorFlow and the project live in different virtual environments:

1. ``python scripts/keras_parity.py keras OUTDIR PHOTO`` (in a throwaway venv with tensorflow-cpu and
   pillow): builds DenseDepth in Keras exactly as the authors' ``model.py`` does (DenseNet-169 without
   top, decoder ``conv2``/``up1..4``/``conv3``, bilinear upsampling with ``align_corners=True``), gives
   every tensor random values (BatchNorm statistics too, so a swapped tensor would show), saves
   ``OUTDIR/densedepth_random.h5``, and writes the photo (640x480, [0, 1]) and Keras' prediction as ``.npy``.
2. ``python scripts/keras_parity.py compare OUTDIR`` (in the project's venv): converts the ``.h5`` with
   ``s3d.depth.convert_densedepth``, runs the PyTorch port and prints the largest difference.

``scripts/keras_parity.sh PHOTO`` runs both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def keras_phase(outdir: Path, photo: Path) -> None:
    import keras
    import tensorflow as tf
    from PIL import Image

    class BilinearUpSampling2D(keras.layers.Layer):
        """DenseDepth's layer: ``tf.image.resize_images(..., align_corners=True)`` to twice the size."""

        def call(self, x):
            s = tf.shape(x)
            return tf.compat.v1.image.resize_bilinear(x, [2 * s[1], 2 * s[2]], align_corners=True)

    base = keras.applications.DenseNet169(input_shape=(None, None, 3), include_top=False, weights=None)
    width = base.layers[-1].output.shape[-1] // 2
    x = keras.layers.Conv2D(width, 1, padding="same", name="conv2")(base.output)
    for i, skip in enumerate(["pool3_pool", "pool2_pool", "pool1", "conv1_relu"], start=1):
        x = BilinearUpSampling2D(name=f"up{i}_upsampling2d")(x)
        x = keras.layers.Concatenate(name=f"up{i}_concat")([x, base.get_layer(skip).output])
        for ab in "AB":
            x = keras.layers.Conv2D(width // 2**i, 3, padding="same", name=f"up{i}_conv{ab}")(x)
            x = keras.layers.LeakyReLU(negative_slope=0.2)(x)
    out = keras.layers.Conv2D(1, 3, padding="same", name="conv3")(x)
    model = keras.Model(base.input, out)

    rng = np.random.default_rng(0)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            shape, name = tuple(w.shape), w.path.split("/")[-1]
            if name == "kernel":
                fan_in = int(np.prod(shape[:-1]))
                values.append(rng.normal(0, np.sqrt(2.0 / fan_in), shape))
            elif name == "gamma":
                values.append(rng.uniform(0.5, 1.5, shape))
            elif name == "moving_variance":
                values.append(rng.uniform(0.5, 2.0, shape))
            else:  # beta, moving_mean, bias
                values.append(rng.normal(0, 0.1, shape))
        if values:
            layer.set_weights([v.astype(np.float32) for v in values])

    outdir.mkdir(parents=True, exist_ok=True)
    model.save(outdir / "densedepth_random.h5")
    image = np.asarray(Image.open(photo).convert("RGB").resize((640, 480), Image.BICUBIC), dtype=np.float32) / 255.0
    np.save(outdir / "input.npy", image[None])
    np.save(outdir / "keras_output.npy", model.predict(image[None], verbose=0))
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}: wrote {outdir}")


def compare_phase(outdir: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from s3d.depth.convert_densedepth import convert
    from s3d.depth.densedepth import DenseDepthNet

    cfg = convert(outdir / "densedepth_random.h5", outdir / "densedepth_random.safetensors")
    net = DenseDepthNet(cfg).eval()
    net.load_state_dict(load_file(str(outdir / "densedepth_random.safetensors")))
    image = np.load(outdir / "input.npy")
    with torch.no_grad():
        ours = net(torch.from_numpy(image).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    theirs = np.load(outdir / "keras_output.npy")
    diff = np.abs(ours - theirs)
    print(f"config read from the .h5: {cfg}")
    print(f"output {ours.shape}, Keras {theirs.shape}; Keras output range [{theirs.min():.4g}, {theirs.max():.4g}]")
    print(f"largest abs difference {diff.max():.3g}, mean {diff.mean():.3g}, largest relative to max |y|: {diff.max() / np.abs(theirs).max():.3g}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["keras"]:
        keras_phase(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1:2] == ["compare"]:
        compare_phase(Path(sys.argv[2]))
    else:
        sys.exit(__doc__)
