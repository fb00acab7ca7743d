"""The depth interface, per-frame normalisation and the weights lookup."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from s3d.errors import MissingWeightsError, S3DError
from s3d.io.weights import file_sha256
from s3d.models.common import stride_size

M = TypeVar("M", bound=nn.Module)


def normalize_nearness(raw: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Min-max normalise each frame to ``[0, 1]``: ``(B, 1, H, W) -> (B, 1, H, W)``; a flat frame gives 0."""
    flat = raw.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    return (raw - lo) / (hi - lo).clamp(min=eps)


def add_vertical_prior(nearness: torch.Tensor, weight: float) -> torch.Tensor:
    """Blend in "lower in the frame is nearer": ``(1 - weight) * nearness + weight * row / (H - 1)``.
    ``(B, 1, H, W) -> (B, 1, H, W)``, still in ``[0, 1]``; ``weight`` 0 returns ``nearness`` itself."""
    if not 0 <= weight <= 1:
        raise ValueError(f"vertical_prior must be between 0 and 1, got {weight}")
    if weight == 0:
        return nearness
    h = nearness.shape[-2]
    rows = torch.arange(h, device=nearness.device, dtype=nearness.dtype).div_(max(h - 1, 1)).view(1, 1, h, 1)
    return nearness * (1 - weight) + rows * weight


def resolve_weights(path: str | Path | None, backend: str, how: str, sha256: str | None = None) -> Path:
    """Return the weights path if the file exists (and has the ``sha256`` given, if any); otherwise raise
    the one-line missing-weights or damaged-weights error."""
    if path is None:
        raise MissingWeightsError("<no path set: depth.weights>", backend, how)
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingWeightsError(p, backend, how)
    if sha256:
        found = file_sha256(p)
        if found != sha256.lower():
            raise S3DError(p, f"sha256 is {found[:12]}..., expected {sha256[:12]}...: damaged or not the weights of '{backend}' ({how})")
    return p


class DepthBackend(nn.Module):
    """Base class of depth backends.

    Subclasses implement :meth:`predict` on a frame resized to the backend's working resolution and
    return any monotone nearness-like map (larger = nearer); :meth:`forward` resizes in and out and
    normalises. Backends are frozen: they never train.
    """

    name: str = "depth"
    autocast_dtype: torch.dtype | None = None  # set by :func:`accelerate`
    channels_last: bool = False

    vertical_prior: float = 0.0  # weight of "lower is nearer" blended into the output (conf/depth `vertical_prior`)
    keyframe_interval: int = 1  # video: run on every n-th frame, the depth carried between (conf/depth `cpu.keyframe_interval`)
    cpu_precision: str = "fp32"  # what precision=auto means on a CPU that computes bf16 natively (conf/depth `cpu.precision`)

    def __init__(self, resolution: int | None = None):
        super().__init__()
        self.resolution = resolution

    def working_size(self, h: int, w: int) -> tuple[int, int]:
        """Size the network runs at: the short side scaled down to ``resolution`` (multiples of 32), never up."""
        if not self.resolution:
            return h, w
        scale = min(1.0, self.resolution / min(h, w))
        return stride_size(h * scale, w * scale)

    def train(self, mode: bool = True) -> DepthBackend:
        """Always eval: a frozen backend keeps its BatchNorm statistics inside a training loop too."""
        return super().train(False)

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` in ``[0, 1]`` -> ``(B, 1, h', w')`` raw nearness, any positive scale."""
        raise NotImplementedError

    @torch.inference_mode()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` RGB in ``[0, 1]`` -> ``(B, 1, H, W)`` nearness in ``[0, 1]``, larger = nearer."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        hh, ww = self.working_size(h, w)
        x = F.interpolate(image, size=(hh, ww), mode="bilinear", align_corners=False, antialias=True) if (hh, ww) != (h, w) else image
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is not None:
            with torch.autocast(x.device.type, dtype=self.autocast_dtype):
                raw = self.predict(x)
            raw = raw.float()
        else:
            raw = self.predict(x)
        raw = F.interpolate(raw, size=(h, w), mode="bilinear", align_corners=False)
        return add_vertical_prior(normalize_nearness(raw), self.vertical_prior)


PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX, as oneDNN reports): elsewhere bf16 is emulated and slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def auto_precision(backend: DepthBackend, device: torch.device, engine: str = "torch") -> str:
    """``precision=auto``: fp16 on CUDA; on the CPU the backend's ``cpu_precision`` where the CPU computes bf16
    natively and PyTorch runs the network, else fp32."""
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and backend.cpu_precision == "bf16" and engine != "onnxruntime" and cpu_has_bf16():
        return "bf16"
    return "fp32"


def accelerate(
    backend: DepthBackend, device: torch.device, precision: str = "auto", compile: bool = False, channels_last: bool = False, engine: str = "torch"
) -> DepthBackend:
    """Speed options of a built backend: the inference ``engine`` (``auto`` = ONNX Runtime on the CPU when
    installed, :mod:`s3d.depth.onnx`; PyTorch otherwise), autocast precision (``auto`` = fp16 on CUDA, fp32
    elsewhere), ``channels_last`` weights and inputs, and ``torch.compile`` of its network (the first batch
    compiles). The last three are PyTorch's: asking for them with ``engine=auto`` picks PyTorch."""
    from s3d.depth.onnx import OnnxRuntimePredict, resolve_engine

    backend.requires_grad_(False)  # frozen, as build_depth makes it (the ONNX trace takes weights as constants)
    if precision == "auto":
        precision = auto_precision(backend, device, engine)
    if precision not in PRECISIONS:
        raise S3DError(None, f"precision must be auto, {', '.join(PRECISIONS)}; got '{precision}'")
    torch_only = [name for name, on in (("compile=true", compile), (f"precision={precision}", precision != "fp32")) if on]
    if engine == "auto" and torch_only:
        engine = "torch"
    engine = resolve_engine(engine, device)
    if engine == "onnxruntime":
        if torch_only:
            raise S3DError(None, f"{torch_only[0]} is a PyTorch option: use engine=torch (or engine=auto)")
        backend.predict = OnnxRuntimePredict(backend.predict, backend)  # type: ignore[method-assign]
        return backend
    backend.autocast_dtype = PRECISIONS[precision]
    if channels_last:
        backend.channels_last = True
        backend.to(memory_format=torch.channels_last)
    if compile:
        backend.predict = torch.compile(backend.predict, dynamic=False)  # type: ignore[method-assign]
    return backend


DESCRIPTION_KEYS = ("name", "title", "license", "note")  # what a conf/depth file says of its network, for people (s3d.depth.auto)


def build_depth(cfg: DictConfig, device: torch.device | str = "cpu") -> DepthBackend:
    """Instantiate the backend named by a ``conf/depth`` config, frozen and in eval mode on ``device``; the
    config's ``vertical_prior`` (any backend's, default 0) is the weight :func:`add_vertical_prior` blends in.
    Its ``cpu`` block (optional) says how the network runs on a CPU: ``resolution`` (instead of the
    config's own), ``precision`` (what ``precision=auto`` picks where bf16 is native) and
    ``keyframe_interval`` (video: the network on every n-th frame, :class:`s3d.stereo.temporal.DepthReuse`)."""
    cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    if cfg.get("auto"):
        raise S3DError(None, "depth=auto is chosen before building: call s3d.depth.auto.resolve_depth first")
    prior = float(cfg.pop("vertical_prior", 0.0) or 0.0)
    if not 0 <= prior <= 1:
        raise S3DError(None, f"depth.vertical_prior must be a number >= 0 and <= 1, got {prior}")
    for key in DESCRIPTION_KEYS:
        cfg.pop(key, None)
    on_cpu = dict(cfg.pop("cpu", None) or {})
    if torch.device(device).type == "cpu" and on_cpu.get("resolution"):
        cfg["resolution"] = on_cpu["resolution"]
    try:
        model = instantiate(cfg)
    except InstantiationException as err:
        if isinstance(err.__cause__, S3DError):  # the backend's own one-line error, e.g. missing weights
            raise err.__cause__ from None
        raise
    if not isinstance(model, DepthBackend):
        raise TypeError(f"{cfg._target_} is not a DepthBackend")
    model.vertical_prior = prior
    if torch.device(device).type == "cpu":
        model.keyframe_interval = int(on_cpu.get("keyframe_interval", 1))
        model.cpu_precision = str(on_cpu.get("precision", "fp32"))
    model.requires_grad_(False)
    return model.eval().to(device)
