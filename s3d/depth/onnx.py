"""ONNX Runtime as the CPU inference engine of a depth backend.

An optional engine (``pip install -e '.[onnx]'``, ``engine=onnxruntime``): ONNX Runtime fuses BatchNorm into
the convolutions and plans its own threads. Measured on this project's 2-core build machine (README, Speed):
the default network alone about as fast as PyTorch with ``channels_last`` when the machine is idle and about
twice as fast when other work shares the cores; end to end the same speed, with 100 MB more memory, so
PyTorch stays the default. The backend's own :meth:`~s3d.depth.base.DepthBackend.predict` is traced once
into an ONNX graph (batch and size dynamic) and cached under a key of the network's weights, so a changed
network can never meet a stale graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from s3d.errors import S3DError
from s3d.io.atomic import atomic_output

ENGINES = ("auto", "torch", "onnxruntime")
OPSET = 17
MULTIPLE = 32  # the working sizes of :meth:`DepthBackend.working_size`


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str, device: torch.device) -> str:
    """``auto`` is ONNX Runtime on the CPU (when installed) and PyTorch on a GPU."""
    if engine not in ENGINES:
        raise S3DError(None, f"engine must be one of {', '.join(ENGINES)}; got '{engine}'")
    if engine == "auto":
        return "onnxruntime" if device.type == "cpu" and onnxruntime_available() else "torch"
    if engine == "onnxruntime":
        if device.type != "cpu":
            raise S3DError(None, f"engine=onnxruntime runs on the CPU; device is {device} (use engine=torch)")
        if not onnxruntime_available():
            raise S3DError(None, "engine=onnxruntime needs the onnxruntime package: pip install onnxruntime")
    return engine


class _Predict(torch.nn.Module):
    def __init__(self, predict: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.predict = predict

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.predict(image)


def export_onnx(predict: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor) -> bytes:
    """Trace ``predict`` ``(B, 3, h, w) -> (B, 1, h', w')`` into ONNX bytes, batch and size dynamic.

    The graph is exact at sizes that are multiples of :data:`MULTIPLE` (TensorFlow-style "same" padding is
    traced as constants, which hold for every even size at every stride)."""
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        buf = io.BytesIO()
        dynamic = {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(
            _Predict(predict).eval(),
            (example.contiguous(),),
            buf,
            input_names=["image"],
            output_names=["nearness"],
            dynamic_axes={"image": dynamic, "nearness": dynamic},
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()


def weights_key(module: torch.nn.Module) -> str:
    """A key for a network's exported graph: its class, its tensors (names, shapes, values) and the exporter."""
    h = hashlib.sha256(f"{type(module).__qualname__} torch {torch.__version__} opset {OPSET}".encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name} {tuple(t.shape)} {t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_dir() -> Path:
    """``$S3D_CACHE_DIR``, else ``$XDG_CACHE_HOME/s3d``, else ``~/.cache/s3d``."""
    if os.environ.get("S3D_CACHE_DIR"):
        return Path(os.environ["S3D_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "s3d"


class OnnxRuntimePredict:
    """Drop-in for a backend's ``predict``: ``(B, 3, h, w)`` float32 CPU tensor -> ``(B, 1, h', w')``.

    The graph is traced from ``predict`` on first use and kept in the cache folder under a key of
    ``module``'s weights, so later runs (and other sizes) start at once. Sizes that are not multiples of
    :data:`MULTIPLE` (a backend with ``resolution=None`` on an odd frame) run ``predict`` itself."""

    def __init__(self, predict: Callable[[torch.Tensor], torch.Tensor], module: torch.nn.Module, threads: int | None = None):
        self.predict, self.module, self.threads = predict, module, threads
        self.session = None
        self.exported = False  # whether this run traced the graph (False: it came from the cache)

    def graph(self, example: torch.Tensor) -> bytes:
        path = cache_dir() / "onnx" / f"{type(self.module).__name__}-{weights_key(self.module)[:20]}.onnx"
        if path.is_file():
            return path.read_bytes()
        graph = export_onnx(self.predict, example[:1].float())
        self.exported = True
        with contextlib.suppress(OSError, S3DError):  # a read-only home only costs the next run the export
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path, overwrite=True) as tmp:  # another process writing the same graph: same bytes
                tmp.write_bytes(graph)
        return graph

    def start(self, example: torch.Tensor) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # measured: 140 MB less peak memory at the same speed
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(self.graph(example), options, providers=["CPUExecutionProvider"])

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.device.type != "cpu":
            raise ValueError(f"ONNX Runtime runs on the CPU; got a tensor on {image.device}")
        if image.shape[-2] % MULTIPLE or image.shape[-1] % MULTIPLE:
            return self.predict(image)
        if self.session is None:
            self.start(image)
        (out,) = self.session.run(None, {"image": np.ascontiguousarray(image.float().numpy())})
        return torch.from_numpy(out)
