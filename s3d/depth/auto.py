"""``depth=auto``, the default: the best depth network this machine can have now, and one line saying which.

Depth Anything V2 Small (Apache-2.0) when its converted weights are here or can be fetched now through
``huggingface_hub`` (:func:`s3d.depth.fetch_depth_anything.fetch`), else the bundled ``s3d_lite0``. The
fall-back is never an error: the line says why (offline, unreachable, a damaged file) and how to fetch
later, and the conversion goes on. ``HF_HUB_OFFLINE=1`` and an explicit ``depth=`` never touch the network.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open

from s3d.errors import MissingWeightsError, S3DError
from s3d.io.weights import file_sha256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthChoice:
    """The depth config to build (a ``conf/depth`` file's), whether it is the preferred one, and the line that says so."""

    cfg: DictConfig
    preferred: bool
    line: str


def describe(cfg: DictConfig) -> str:
    """``depth: Depth Anything V2 Small (depth_anything_v2_small, Apache-2.0)`` for a ``conf/depth`` config."""
    name = cfg.get("name") or str(cfg.get("_target_", "")).rsplit(".", 1)[-1]
    return f"depth: {cfg.get('title', name)} ({name}, {cfg.get('license', 'licence not stated')})"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set: the Hub client must not reach the network."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached_problem(path: Path, variant: str) -> str | None:
    """Why the converted weights at ``path`` cannot be used (absent, damaged, another network), or ``None``.

    Cheap: the safetensors header's tensor names and shapes, and the file's sha256 against the one
    recorded beside it when it was converted."""
    from s3d.depth.fetch_depth_anything import own_shapes

    if not path.is_file():
        return "not fetched yet"
    try:
        with safe_open(str(path), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except Exception:  # safetensors raises several types for a damaged header
        return f"{path} is damaged (not a readable safetensors file)"
    if shapes != own_shapes(variant):
        return f"{path} is not the converted Depth Anything V2 {variant.title()}"
    record = path.with_suffix(".json")
    if record.is_file():
        try:
            want = json.loads(record.read_text()).get("sha256")
        except (OSError, ValueError):
            want = None
        stat = path.stat()
        if want and _sha256_of(str(path), stat.st_mtime_ns, stat.st_size) != want:
            return f"{path} is damaged (sha256 differs from {record.name})"
    return None


@lru_cache(maxsize=8)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    """A file's sha256, read once per state of the file (the web page asks at every job and page load)."""
    return file_sha256(Path(path))


def choose_depth(depth_cfg: DictConfig, quiet: bool = False, fetch: bool = True) -> DepthChoice:
    """``depth=auto`` -> the config of the network to use; any other ``depth=`` -> itself, untouched.

    Fetches the preferred network once if its weights are absent or damaged and the Hub may be reached
    (``fetch``; the web page asks first); a failed fetch keeps nothing and falls back to the bundled model."""
    if not depth_cfg.get("auto"):
        return DepthChoice(depth_cfg, True, describe(depth_cfg))
    prefer, fallback = depth_cfg.prefer, depth_cfg.fallback
    weights = Path(str(prefer.weights)).expanduser()
    title = prefer.get("title", weights.stem)
    problem = cached_problem(weights, str(prefer.get("variant", "small")))
    if problem is None:
        return DepthChoice(prefer, True, describe(prefer))
    if not fetch:
        why = f"{title} is {problem}"
    elif hub_offline():
        why = f"{title} is {problem} and HF_HUB_OFFLINE is set"
    else:
        try:
            fetch_preferred(prefer, quiet)
            return DepthChoice(prefer, True, describe(prefer))
        except S3DError as err:
            why = f"{title} could not be fetched ({err})"
    line = f"{describe(fallback)} instead: {why}; fetch it later with: {prefer.get('how', 'make weights')}"
    return DepthChoice(fallback, False, line)


def fetch_preferred(prefer: DictConfig, quiet: bool = False) -> dict:
    """Fetch and convert ``depth=auto``'s preferred network to its ``weights`` path; :class:`S3DError` on failure."""
    from s3d.depth.fetch_depth_anything import fetch

    log.info("depth: fetching %s (%s; first use, about 100 MB, huggingface_hub cache)", prefer.get("title"), prefer.get("license", ""))
    return fetch(str(prefer.get("variant", "small")), Path(str(prefer.weights)).expanduser(), quiet)


def resolve_depth(cfg: DictConfig, quiet: bool = False, fetch: bool = True) -> DepthChoice:
    """Replace ``cfg.depth`` (a job's config, in place) by the network :func:`choose_depth` picks; a fall-back's
    line goes with it (``note``), for :func:`announce` to say once the network is built. A chosen network
    whose weights are absent is the one-line missing-weights error now, before any work."""
    choice = choose_depth(cfg.depth, quiet, fetch)
    weights = choice.cfg.get("weights")
    if weights and not Path(str(weights)).expanduser().is_file():
        raise MissingWeightsError(weights, choice.cfg.get("name", "depth"), choice.cfg.get("how", "make weights"))
    if cfg.depth.get("auto"):
        OmegaConf.set_struct(cfg, False)
        cfg.depth = choice.cfg
        if not choice.preferred:
            cfg.depth.note = choice.line
    return choice


_announced: set[str] = set()


def announce(depth_cfg: DictConfig) -> str:
    """Log, once per process, the line that names the depth network in use (or why the fall-back is used)."""
    line = depth_cfg.get("note") or describe(depth_cfg)
    if line not in _announced:
        _announced.add(line)
        log.info("%s", line)
    return line
