"""``make weights``: download the authors' ``nyu.h5``, check it, record its sha256 and convert it.

``python -m s3d.depth.fetch_densedepth [--url URL] [--out weights/densedepth_nyu.safetensors]``

The download streams to a temporary file and is renamed only when its length matches the server's
Content-Length; the ``.h5`` is then checked tensor by tensor against DenseNet-169 DenseDepth by the
converter, and its sha256 is written into the converted file's metadata and the ``.json`` beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from s3d import cli
from s3d.config import PROJECT_ROOT
from s3d.depth.convert_densedepth import convert
from s3d.depth.densedepth import DenseDepthConfig
from s3d.errors import S3DError
from s3d.io.weights import download

# Published by the DenseDepth authors (github.com/ialhashim/DenseDepth, README: "NYU Depth V2 (165 MB)").
NYU_URL = "https://s3-eu-west-1.amazonaws.com/densedepth/nyu.h5"
DEFAULT_OUT = PROJECT_ROOT / "weights" / "densedepth_nyu.safetensors"


def fetch(url: str, out: Path, expect_densenet169: bool = True, quiet: bool = False) -> DenseDepthConfig:
    """Download, check and convert; the ``.h5`` is kept beside ``out`` as ``<out stem>.h5``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    h5 = download(url, out.with_suffix(".h5"), quiet=quiet)
    try:
        cfg = convert(h5, out)
    except S3DError:
        h5.unlink()  # complete but wrong (a web page, another model): keep nothing that looks usable
        raise
    if expect_densenet169 and (cfg.block_config, cfg.growth_rate, cfg.decoder_width) != (
        DenseDepthConfig().block_config,
        DenseDepthConfig().growth_rate,
        DenseDepthConfig().decoder_width,
    ):
        out.unlink()
        out.with_suffix(".json").unlink()
        raise S3DError(h5, f"not the DenseNet-169 DenseDepth of nyu.h5: {cfg}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=NYU_URL)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--any-size", action="store_true", help="accept any DenseDepth, not only DenseNet-169 (tests)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    cfg = cli.run(fetch, args.url, args.out, not args.any_size, args.quiet)
    print(f"{args.out}: DenseDepth {cfg.block_config}, sha256 of the .h5 in {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
