"""User-facing errors: one line that names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class S3DError(Exception):
    """An error the user can act on; the CLI prints ``str(err)`` alone, without a traceback."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class OutputExistsError(S3DError):
    """An output (or a depth map) is already there and ``overwrite`` is off: a folder run skips that file."""

    def __init__(self, path: str | Path, what: str = "output"):
        super().__init__(path, f"{what} exists; pass overwrite=true to replace it")


class MissingWeightsError(S3DError):
    """A backend's weights file is absent; ``how`` says how to get it."""

    def __init__(self, path: str | Path, backend: str, how: str):
        super().__init__(path, f"missing weights for depth backend '{backend}'; get them with: {how}")


def check_frame_size(path: str | Path, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse a frame above ``max_pixels`` from its declared size, before anything is decoded."""
    if max_pixels and width * height > max_pixels:
        raise S3DError(
            path, f"frame size {width}x{height} is above the limit max_pixels={max_pixels}; raise it if this machine has the memory (with batch_size=1)"
        )
