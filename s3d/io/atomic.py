"""Outputs appear whole or not at all: write to a hidden temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from s3d.errors import OutputExistsError, S3DError


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse an existing output (unless ``overwrite``) or a folder that cannot take it."""
    if path.is_dir():
        raise S3DError(path, "output is a folder; give a file name")
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    parent = path.parent
    if not parent.exists():
        raise S3DError(parent, "output folder does not exist")
    if not parent.is_dir():
        raise S3DError(parent, "output folder is not a folder")
    if not os.access(parent, os.W_OK):
        raise S3DError(parent, "output folder is not writable")


@contextlib.contextmanager
def atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on any failure delete it.

    Covers exceptions, Ctrl-C (``KeyboardInterrupt``) and ``SystemExit`` alike.
    """
    check_output(path, overwrite)
    # Unique per writer: two processes (or two machines sharing a folder, where pids repeat) never share one.
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield tmp
        if path.exists() and not overwrite:
            raise S3DError(path, "output appeared while converting; pass overwrite=true to replace it")
        os.replace(tmp, path)
    except OSError as err:
        raise S3DError(path, f"cannot write output: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
