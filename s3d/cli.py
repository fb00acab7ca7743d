"""What every entry point shares: logging, and one-line errors with a non-zero exit instead of tracebacks.

Two command-line styles, one per kind of tool: jobs (``convert.py``, ``train.py``, ``evaluate.py``, ``app.py``,
``python -m s3d.bench``) take ``key=value`` overrides of their ``conf/`` file (:func:`main`); file tools
(converters, downloaders, ``python -m s3d.export``, ``python -m s3d.models.ship``) take paths and ``--flags``
through argparse (:func:`file_tool` for the ones that take only paths).
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
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


def config_error(err: Exception, tool: str) -> str:
    """Hydra's multi-line composition errors as one line that names the option."""
    text = str(err)
    unknown = re.match(r"Could not override '([^']+)'", text)
    if unknown:
        return f"unknown option '{unknown.group(1)}' ({tool} --help lists every option)"
    missing = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        options = re.findall(r"^\t(\S+)$", text.split("Config search path")[0], flags=re.M)
        return f"{group}={name}: no such {group}; one of {', '.join(options)}"
    return text.splitlines()[0]


def main(config_name: str, job: Callable, argv: list[str] | None = None, tool: str | None = None):
    """An entry point: ``key=value`` overrides of ``conf/<config_name>.yaml``, composed as the tests compose
    them, then :func:`run` ``job(cfg)``. ``--help`` prints the config with its comments; a mistyped option is
    one line and exit 1, like every other error."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from s3d.config import CONF_DIR, compose

    args = list(sys.argv[1:] if argv is None else argv)
    tool = tool or f"python {config_name}.py"
    if args and args[0] in ("-h", "--help"):
        print(f"usage: {tool} [key=value ...]; the options, their defaults and what they do:\n")
        print((CONF_DIR / f"{config_name}.yaml").read_text())
        return None

    def composed():
        try:
            cfg = compose(config_name, args)
        except (HydraException, OmegaConfBaseException, ValueError) as err:  # e.g. an index into a list: clips.x=1
            raise S3DError(None, config_error(err, tool)) from None
        return job(cfg)

    return run(composed)


def file_tool(prog: str, description: str, job: Callable[..., T], paths: tuple[str, ...], argv: list[str] | None = None) -> T:
    """A tool that takes file paths: ``prog PATH ...`` (``--help`` from argparse, a wrong count is argparse's
    one-line usage error, exit 2), then :func:`run` ``job(*paths)``."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    for name in paths:
        ap.add_argument(name, type=Path)
    args = ap.parse_args(argv)
    return run(job, *(getattr(args, name) for name in paths))
