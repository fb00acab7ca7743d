"""``make weights``: download the authors' ``nyu.h5``, check it, record its sha256 and convert it.

``python -m s3d.depth.fetch_densedepth [--url URL] [--out weights/densedepth_nyu.safetensors]``

The download streams to a temporary file and is renamed only when its length matches the server's
Content-Length; the ``.h5`` is then checked tensor by tensor against DenseNet-169 DenseDepth by the
converter, and its sha256 is written into the converted file's metadata and the ``.json`` beside it.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from s3d import cli
from s3d.config import PROJECT_ROOT
from s3d.depth.convert_densedepth import convert
from s3d.depth.densedepth import DenseDepthConfig
from s3d.errors import S3DError
from s3d.io.atomic import atomic_output

# Published by the DenseDepth authors (github.com/ialhashim/DenseDepth, README: "NYU Depth V2 (165 MB)").
NYU_URL = "https://s3-eu-west-1.amazonaws.com/densedepth/nyu.h5"
DEFAULT_OUT = PROJECT_ROOT / "weights" / "densedepth_nyu.safetensors"


def download(url: str, dst: Path, timeout: float = 60.0, quiet: bool = False) -> Path:
    """Stream ``url`` to ``dst``; a failed or short download leaves no ``dst`` and no temporary file."""
    with atomic_output(dst, overwrite=True) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:
                total = int(resp.headers.get("Content-Length") or 0)
                got = 0
                with tqdm(total=total or None, unit="B", unit_scale=True, desc=dst.name, disable=quiet, file=sys.stderr) as bar:
                    while chunk := resp.read(1 << 20):
                        f.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as err:
            raise S3DError(url, f"download failed: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
            raise S3DError(url, f"download failed: {reason}") from None
        if total and got != total:
            raise S3DError(url, f"download incomplete: {got} of {total} bytes")
        if got == 0:
            raise S3DError(url, "download is empty")
    return dst


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
