"""The default depth network on each CPU inference path, interleaved in one run (README, Speed):

    python scripts/depth_engine_sweep.py [CLIP] [ROUNDS]

PyTorch eager (NCHW and channels_last), ONNX Runtime fp32 (the engine=auto path), and ONNX Runtime int8
(static QDQ quantisation, per channel, calibrated on 16 frames of CLIP): milliseconds per frame at the
working size convert.py uses for CLIP (batches of 4), and each path's agreement with PyTorch fp32 on other
frames of CLIP (mean absolute difference of the normalised nearness and Spearman rank correlation).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from s3d.config import PROJECT_ROOT, compose
from s3d.depth import accelerate, build_depth
from s3d.depth.base import normalize_nearness
from s3d.depth.onnx import export_onnx
from s3d.io.video import decode_frames, probe_video

CPU = torch.device("cpu")


def frames_of(clip: Path, count: int, step: int) -> torch.Tensor:
    out = []
    for i, f in enumerate(decode_frames(probe_video(clip))):
        if i % step == 0:
            out.append(torch.from_numpy(f.rgb).permute(2, 0, 1).float() / 255)
        if len(out) == count:
            break
    return torch.stack(out)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.flatten().argsort().argsort().double(), b.flatten().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack((ra, rb)))[0, 1])


def main() -> None:
    clip = Path(sys.argv[1]) if len(sys.argv) > 1 else PROJECT_ROOT / "samples/big_buck_bunny_432_433s_720p.webm"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    cfg = compose("convert", ["depth=s3d_lite0"])
    backend = build_depth(cfg.depth)
    frames = frames_of(clip, 24, 1)
    h, w = backend.working_size(*frames.shape[-2:])
    small = F.interpolate(frames, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    calib, test = small[:16], small[16:24]
    threads = torch.get_num_threads()

    def session(graph: bytes):
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads, o.enable_cpu_mem_arena = threads, 1, False
        return ort.InferenceSession(graph, o, providers=["CPUExecutionProvider"])

    graph = export_onnx(backend.predict, small[:1])
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, int8_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        fp32_path.write_bytes(graph)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter([{"image": calib[i : i + 1].numpy()} for i in range(len(calib))])

            def get_next(self):
                return next(self.items, None)

        quantize_static(
            str(fp32_path),
            str(int8_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
        int8 = session(int8_path.read_bytes())
    fp32 = session(graph)
    nhwc = accelerate(build_depth(cfg.depth), CPU, channels_last=True, engine="torch")

    def run_ort(s):
        return lambda x: torch.from_numpy(s.run(None, {"image": np.ascontiguousarray(x.numpy())})[0])

    paths = {
        "torch NCHW": backend.predict,
        "torch channels_last": lambda x: nhwc.predict(x.contiguous(memory_format=torch.channels_last)),
        "onnxruntime fp32": run_ort(fp32),
        "onnxruntime int8": run_ort(int8),
    }
    ms = {k: [] for k in paths}
    batches = [test[i : i + 4] for i in range(0, len(test), 4)]
    with torch.inference_mode():
        ref = torch.cat([normalize_nearness(backend.predict(b)) for b in batches])
        for fn in paths.values():
            fn(batches[0])  # warm-up
        for _ in range(rounds):
            for name, fn in paths.items():
                start = time.perf_counter()
                for b in batches:
                    fn(b)
                ms[name].append(1000 * (time.perf_counter() - start) / len(test))
        print(f"{clip.name}: working size {w}x{h}, batches of 4, {threads} threads, {rounds} rounds interleaved")
        for name, fn in paths.items():
            out = torch.cat([normalize_nearness(fn(b)) for b in batches])
            diff = float((out - ref).abs().mean())
            rho = min(spearman(out[i], ref[i]) for i in range(len(out)))
            print(f"{name:22s} {' '.join(f'{m:6.1f}' for m in ms[name])} ms/frame   mean |diff| {diff:.4f}   min Spearman {rho:.4f}")


if __name__ == "__main__":
    main()
