"""What every entry point shares: logging, and one-line errors with a non-zero exit instead of tracebacks."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from s3d.errors import S3DError

T = TypeVar("T")
EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt


def run(job: Callable[..., T], *args) -> T:
    """Run ``job``; an :class:`S3DError` or Ctrl-C/SIGTERM ends the process with one line on stderr.

    Outputs are written through :func:`s3d.io.atomic.atomic_output`, so an interrupted job leaves none.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        return job(*args)
    except S3DError as err:
        print(f"s3d: error: {err}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        print("s3d: interrupted; no output was written", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
