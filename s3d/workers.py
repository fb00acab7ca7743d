"""One film across several workers: processes on this machine (``workers=N``, launched by Lightning
Fabric), or processes on several machines started by ``torchrun`` with the output on a shared folder.

Workers share nothing but the segment work folder (:mod:`s3d.io.segments`): worker ``r`` of ``N``
converts segments ``r, r + N, r + 2N, ...``; all wait at a barrier, and worker 0 joins the output.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

# A worker may wait at the barrier for as long as the slowest worker converts its share of a film.
BARRIER_TIMEOUT = timedelta(days=7)


def worker_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` when it works alone.

    Under ``torchrun`` (``RANK``/``WORLD_SIZE`` in the environment) the process group is set up here.
    """
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def wait_for_workers() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _run_worker(fabric: Any, fn: Callable, args: tuple, threads: int) -> Any:
    torch.set_num_threads(threads)
    return fn(*args)


def run_on_workers(fn: Callable, args: tuple, workers: int, device: str = "auto") -> Any:
    """Run ``fn(*args)`` in ``workers`` processes (one per GPU on CUDA), each with its share of the CPU
    threads; returns worker 0's result. An error in any worker is raised here."""
    from lightning_fabric import Fabric  # ships with pytorch-lightning
    from lightning_fabric.strategies import DDPStrategy

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    strategy = DDPStrategy(start_method="spawn", process_group_backend="nccl" if cuda else "gloo", timeout=BARRIER_TIMEOUT)
    fabric = Fabric(accelerator="cuda" if cuda else "cpu", devices=workers, strategy=strategy)
    threads = max(1, (os.cpu_count() or 1) // workers)
    return fabric.launch(_run_worker, fn, args, threads)
