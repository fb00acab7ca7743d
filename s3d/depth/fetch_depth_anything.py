"""``make weights depth=depth_anything_v2_{small,base,large}``: fetch Depth Anything V2, check it, record its sha256 and convert it.

``python -m s3d.depth.fetch_depth_anything [--variant small|base|large] [--file PATH] [--out weights/depth_anything_v2_<variant>.safetensors]``

The published file is the Hugging Face ``transformers`` port (``DepthAnythingForDepthEstimation``,
``model.safetensors`` in ``depth-anything/Depth-Anything-V2-<Size>-hf``). It is fetched through
``huggingface_hub`` (:func:`hub_download`): its cache, resumed downloads and progress bar, ``HF_ENDPOINT``
(a mirror) and ``HF_HUB_OFFLINE``. The download is checked against the sha256 the Hub names it by (its
ETag), then every tensor by name and shape, and renamed to :class:`s3d.depth.depth_anything.DepthAnythingNet`'s
layout (q, k and v concatenated into timm's fused ``qkv``). The download's sha256 and the converted
file's go into the converted file's metadata and the ``.json`` beside it. A download that fails a check
is removed from the Hub cache, so it is never taken again. ``--file`` converts a published file already on
disk. Base and Large are published under CC-BY-NC-4.0 (non-commercial), Small under Apache-2.0;
``depth=auto`` (the default of ``convert.py``) fetches Small on first use (:mod:`s3d.depth.auto`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from s3d import cli
from s3d.config import PROJECT_ROOT
from s3d.depth.depth_anything import VARIANTS, DepthAnythingNet
from s3d.errors import S3DError
from s3d.io.atomic import atomic_output
from s3d.io.weights import file_sha256

HUB_REPOS = {v: f"depth-anything/Depth-Anything-V2-{v.title()}-hf" for v in VARIANTS}
HUB_FILE = "model.safetensors"
HUB_REVISION = "main"
HUB_TIMEOUT = 5.0  # seconds the Hub has to answer the first request: an unreachable Hub costs seconds, not minutes
SHA256 = re.compile(r"[0-9a-f]{64}")


def default_out(variant: str) -> Path:
    return PROJECT_ROOT / "weights" / f"depth_anything_v2_{variant}.safetensors"


def _title(variant: str) -> str:
    return f"Depth Anything V2 {variant.title()}"


# transformers >= 5 names the DINOv2 attention like this in memory; the published file has the older names.
ALIASES = {
    "attention.q_proj.": "attention.attention.query.",
    "attention.k_proj.": "attention.attention.key.",
    "attention.v_proj.": "attention.attention.value.",
    "attention.o_proj.": "attention.output.dense.",
}
MASK_TOKEN = "backbone.embeddings.mask_token"  # masked-image pre-training only; accepted and dropped

_L = "backbone.encoder.layer.{0}."
# (our tensor name, the Hugging Face name(s) it comes from): several names are concatenated along dim 0.
RULES: list[tuple[str, Callable[[tuple[str, ...]], tuple[str, ...]]]] = [
    (r"encoder\.cls_token", lambda g: ("backbone.embeddings.cls_token",)),
    (r"encoder\.pos_embed", lambda g: ("backbone.embeddings.position_embeddings",)),
    (r"encoder\.patch_embed\.proj\.(weight|bias)", lambda g: (f"backbone.embeddings.patch_embeddings.projection.{g[0]}",)),
    (r"encoder\.norm\.(weight|bias)", lambda g: (f"backbone.layernorm.{g[0]}",)),
    (r"encoder\.blocks\.(\d+)\.(norm[12])\.(weight|bias)", lambda g: (_L.format(g[0]) + f"{g[1]}.{g[2]}",)),
    (
        r"encoder\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)",
        lambda g: tuple(_L.format(g[0]) + f"attention.attention.{p}.{g[1]}" for p in ("query", "key", "value")),
    ),
    (r"encoder\.blocks\.(\d+)\.attn\.proj\.(weight|bias)", lambda g: (_L.format(g[0]) + f"attention.output.dense.{g[1]}",)),
    (r"encoder\.blocks\.(\d+)\.ls([12])\.gamma", lambda g: (_L.format(g[0]) + f"layer_scale{g[1]}.lambda1",)),
    (r"encoder\.blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", lambda g: (_L.format(g[0]) + f"mlp.{g[1]}.{g[2]}",)),
    (r"head\.projects\.(\d)\.(weight|bias)", lambda g: (f"neck.reassemble_stage.layers.{g[0]}.projection.{g[1]}",)),
    (r"head\.resize_layers\.(\d)\.(weight|bias)", lambda g: (f"neck.reassemble_stage.layers.{g[0]}.resize.{g[1]}",)),
    (r"head\.layer(\d)_rn\.weight", lambda g: (f"neck.convs.{int(g[0]) - 1}.weight",)),
    # The port runs its fusion layers deepest first: its layer 0 is the original refinenet4.
    (
        r"head\.refinenet(\d)\.resConfUnit([12])\.conv([12])\.(weight|bias)",
        lambda g: (f"neck.fusion_stage.layers.{4 - int(g[0])}.residual_layer{g[1]}.convolution{g[2]}.{g[3]}",),
    ),
    (r"head\.refinenet(\d)\.out_conv\.(weight|bias)", lambda g: (f"neck.fusion_stage.layers.{4 - int(g[0])}.projection.{g[1]}",)),
    (r"head\.output_conv1\.(weight|bias)", lambda g: (f"head.conv1.{g[0]}",)),
    (r"head\.output_conv2\.0\.(weight|bias)", lambda g: (f"head.conv2.{g[0]}",)),
    (r"head\.output_conv2\.2\.(weight|bias)", lambda g: (f"head.conv3.{g[0]}",)),
]


def hf_sources(name: str) -> tuple[str, ...]:
    """The Hugging Face tensor name(s) our tensor ``name`` is made of."""
    for pattern, source in RULES:
        m = re.fullmatch(pattern, name)
        if m:
            return source(m.groups())
    raise KeyError(f"no Hugging Face source for '{name}'")


@lru_cache(maxsize=len(VARIANTS))
def own_shapes(variant: str = "small") -> dict[str, tuple[int, ...]]:
    """Our network's tensor names and shapes (built on the meta device: no memory, no initialisation)."""
    with torch.device("meta"):
        net = DepthAnythingNet(variant, init=False)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _part_shape(shape: tuple[int, ...], parts: int) -> tuple[int, ...]:
    return (shape[0] // parts, *shape[1:])


def hf_shapes(variant: str = "small") -> dict[str, tuple[int, ...]]:
    """Every tensor of the published file, by name, with its shape (the inverse of the conversion)."""
    out = {MASK_TOKEN: (1, VARIANTS[variant].embed_dim)}
    for name, shape in own_shapes(variant).items():
        parts = hf_sources(name)
        out.update({p: _part_shape(shape, len(parts)) for p in parts})
    return out


def canonical_name(name: str) -> str:
    """The published file's name for a tensor that transformers >= 5 names differently."""
    for new, old in ALIASES.items():
        name = name.replace(new, old)
    return name


def convert_hf_state(state: dict[str, torch.Tensor], source: str | Path | None = None, variant: str = "small") -> dict[str, torch.Tensor]:
    """Hugging Face ``DepthAnythingForDepthEstimation`` state dict -> :class:`DepthAnythingNet` state dict (float32).

    Every tensor is checked: a missing, unexpected or wrongly shaped one is refused with one line
    naming it (and ``source``, the file it came from).
    """
    state = {canonical_name(k): v for k, v in state.items()}
    wanted, title = hf_shapes(variant), _title(variant)
    missing = [k for k in wanted if k not in state and k != MASK_TOKEN]
    if missing:
        raise S3DError(source, f"missing tensor '{missing[0]}' ({len(missing)} missing in all); not {title}")
    for name, tensor in state.items():
        if name not in wanted:
            raise S3DError(source, f"unexpected tensor '{name}'; not {title}")
        if tuple(tensor.shape) != wanted[name]:
            raise S3DError(source, f"tensor '{name}' has shape {tuple(tensor.shape)}, expected {wanted[name]}; not {title}")
    return {name: torch.cat([state[p].float() for p in hf_sources(name)]).contiguous() for name in own_shapes(variant)}


def convert(src: Path, dst: Path, url: str | None = None, variant: str = "small") -> dict:
    """Convert the published ``src`` to ``dst`` and ``dst.with_suffix('.json')``, each written atomically; returns the metadata."""
    try:
        state = load_file(str(src))
    except Exception as err:  # safetensors raises several types for a corrupt header
        raise S3DError(src, f"not a readable safetensors file ({err})") from None
    converted = convert_hf_state(state, src, variant)
    meta = {"architecture": f"depth_anything_v2_{variant}", "source": url or src.name, "source_sha256": file_sha256(src)}
    with atomic_output(dst, overwrite=True) as tmp:
        save_file(converted, str(tmp), metadata={"s3d": json.dumps(meta)})
        meta["sha256"] = file_sha256(tmp)  # the converted file's own: s3d.depth.auto checks a cached file against it
    with atomic_output(dst.with_suffix(".json"), overwrite=True) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def hub_url(variant: str = "small") -> str:
    """Where the published file is: on ``HF_ENDPOINT`` (huggingface.co unless set)."""
    from huggingface_hub import hf_hub_url

    return hf_hub_url(HUB_REPOS[variant], HUB_FILE, revision=HUB_REVISION)


def _reason(err: BaseException) -> str:
    """The cause of a failed Hub request, in a few words: the Hub client's errors come with a chain of causes and several lines."""
    from huggingface_hub.errors import FileMetadataError, HfHubHTTPError, OfflineModeIsEnabled

    try:  # the HTTP library huggingface_hub 2.x uses; 1.x used httpx
        import httpx2 as http
    except ImportError:
        import httpx as http

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OfflineModeIsEnabled):
            return "offline (HF_HUB_OFFLINE=1)"
        if isinstance(seen, http.TimeoutException):
            return f"no answer within {HUB_TIMEOUT:g} s"
        if isinstance(seen, http.ConnectError):
            return "cannot connect"
        if isinstance(seen, HfHubHTTPError) and seen.response is not None:
            return f"HTTP {seen.response.status_code}"
        if isinstance(seen, FileMetadataError):
            return "the server does not answer like the Hugging Face Hub (no X-Repo-Commit or ETag)"
        seen = seen.__cause__ or seen.__context__
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__


def forget_download(path: Path) -> None:
    """Remove a download from the Hub cache: the snapshot's link and the blob it points to."""
    blob = path.resolve()
    for p in (path, blob):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def hub_download(variant: str = "small", quiet: bool = False) -> Path:
    """The published file of ``variant`` in the Hub cache (fetched, or resumed, if not there yet), its
    content checked against the sha256 the Hub names it by. A failure is one :class:`S3DError` line."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    url = hub_url(variant)
    cached = try_to_load_from_cache(HUB_REPOS[variant], HUB_FILE, revision=HUB_REVISION)
    bars_were_off = are_progress_bars_disabled()
    if quiet:
        disable_progress_bars()
    try:
        if not isinstance(cached, str):
            # One question first, answered within HUB_TIMEOUT: the client itself retries an unanswered Hub
            # for minutes (60 s a try, with back-off) before it gives up.
            get_hf_file_metadata(url, timeout=HUB_TIMEOUT)
        path = Path(hf_hub_download(HUB_REPOS[variant], HUB_FILE, revision=HUB_REVISION, etag_timeout=HUB_TIMEOUT))
    except Exception as err:  # the Hub client raises many types; each becomes one line
        raise S3DError(url, f"cannot fetch: {_reason(err)}") from None
    finally:
        if quiet and not bars_were_off:
            enable_progress_bars()
    blob = path.resolve()
    if SHA256.fullmatch(blob.name) and file_sha256(blob) != blob.name:  # git-LFS files: the blob is named by its sha256
        forget_download(path)
        raise S3DError(url, f"damaged download: its sha256 is not the {blob.name[:12]}... the Hub names; removed, try again")
    return path


def fetch(variant: str = "small", out: Path | None = None, quiet: bool = False, src: Path | None = None) -> dict:
    """Fetch ``variant`` through the Hub cache (or take the published file ``src``), convert it to ``out``;
    returns the metadata. A fetched file that is not the variant's is removed from the cache."""
    out = out or default_out(variant)
    out.parent.mkdir(parents=True, exist_ok=True)
    if src is not None:
        return convert(src, out, str(src), variant)
    download = hub_download(variant, quiet)
    try:
        return convert(download, out, hub_url(variant), variant)
    except S3DError:
        forget_download(download)  # damaged or foreign: never taken from the cache again
        raise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=tuple(VARIANTS), default="small")
    ap.add_argument("--file", type=Path, default=None, help="convert this published model.safetensors instead of fetching it")
    ap.add_argument("--out", type=Path, default=None, help="default: weights/depth_anything_v2_<variant>.safetensors")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    out = args.out or default_out(args.variant)
    meta = cli.run(fetch, args.variant, out, args.quiet, args.file)
    print(f"{out}: {_title(args.variant)}, source sha256 {meta['source_sha256'][:12]}... (in {out.with_suffix('.json')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
