"""Config helpers shared by the entry points: the ``s3d_root`` resolver and Hydra composition for tests."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"

if not OmegaConf.has_resolver("s3d_root"):
    OmegaConf.register_new_resolver("s3d_root", lambda: str(PROJECT_ROOT))


def compose(config_name: str, overrides: list[str] | None = None):
    """Compose a config from ``conf/`` exactly as the entry point would (used by tests and scripts)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides or [])
