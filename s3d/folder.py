"""Converting a folder: every video and photo in it (``recursive=true`` for sub-folders), one at a time.

Each file goes through :func:`s3d.convert.convert_file`; with ``on_error=skip`` a file that fails is
reported and the next one converted, with ``on_error=stop`` the first failure ends the run. Files this
tool wrote (their names carry a layout suffix) and hidden files are not inputs. Outputs go beside each
input, or under ``output=`` (a folder) mirroring the input's sub-folders. A summary ends the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from s3d.errors import OutputExistsError, S3DError
from s3d.io.image import PHOTO_SUFFIXES
from s3d.io.video import VIDEO_SUFFIXES

log = logging.getLogger(__name__)


@dataclass
class FolderReport:
    converted: list[tuple[Path, list[Path]]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{len(self.converted)} converted, {len(self.skipped)} skipped, {len(self.failed)} failed"]
        lines += [f"  skipped {p}: {why}" for p, why in self.skipped]
        lines += [f"  failed  {p}: {why}" for p, why in self.failed]
        return "\n".join(lines)


def is_own_output(path: Path, suffixes: tuple[str, ...]) -> bool:
    return any(s in path.stem for s in suffixes) or path.stem.endswith("_wiggle")


def media_files(folder: Path, recursive: bool, own_suffixes: tuple[str, ...]) -> list[Path]:
    """Videos and photos in ``folder``, sorted, without hidden files or this tool's outputs."""
    pattern = "**/*" if recursive else "*"
    files = []
    for p in sorted(folder.glob(pattern)):
        rel = p.relative_to(folder)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in VIDEO_SUFFIXES | PHOTO_SUFFIXES and not is_own_output(p, own_suffixes):
            files.append(p)
    return files


def convert_folder(cfg: DictConfig, folder: Path, convert_file: Callable[[DictConfig, Path], list[Path]], own_suffixes: tuple[str, ...]) -> FolderReport:
    if cfg.on_error not in ("skip", "stop"):
        raise S3DError(None, f"on_error must be skip or stop, got '{cfg.on_error}'")
    out_root = Path(cfg.output).expanduser() if cfg.output else None
    if out_root is not None and not out_root.is_dir():
        raise S3DError(out_root, "with a folder as input, output= must be an existing folder")
    files = media_files(folder, cfg.recursive, own_suffixes)
    if not files:
        raise S3DError(folder, "no videos or photos in this folder" + ("" if cfg.recursive else " (recursive=true looks in sub-folders)"))
    report = FolderReport()
    for i, src in enumerate(files, 1):
        log.info("[%d/%d] %s", i, len(files), src)
        file_cfg = OmegaConf.merge(cfg, {"input": str(src), "output": None})
        if out_root is not None:
            target = out_root / src.relative_to(folder).parent
            target.mkdir(parents=True, exist_ok=True)
            file_cfg.output_dir = str(target)
        try:
            report.converted.append((src, convert_file(file_cfg, src)))
        except OutputExistsError:
            report.skipped.append((src, "output exists (overwrite=true to replace)"))
        except S3DError as err:
            report.failed.append((src, str(err)))
            log.error("%s", err)
            if cfg.on_error == "stop":
                break
    log.info("%s: %s", folder, report.summary())
    return report
