"""Config helpers shared by the entry points: the ``s3d_root`` resolver and Hydra composition."""

from __future__ import annotations

import threading
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"

if not OmegaConf.has_resolver("s3d_root"):
    OmegaConf.register_new_resolver("s3d_root", lambda: str(PROJECT_ROOT))

# Hydra keeps one global state: two threads composing at once, or a compose inside ``@hydra.main``, clash.
_COMPOSE_LOCK = threading.Lock()


def compose(config_name: str, overrides: list[str] | None = None):
    """Compose a config from ``conf/`` exactly as the entry point would; callable from any thread and from
    inside an ``@hydra.main`` entry point (whose Hydra state is set aside and restored)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    with _COMPOSE_LOCK:
        outer = get_gh_backup() if GlobalHydra.instance().is_initialized() else None
        if outer is not None:
            GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                return hydra_compose(config_name=config_name, overrides=overrides or [])
        finally:
            if outer is not None:
                restore_gh_from_backup(outer)
