"""train.py as a user runs it, on the real stereo pairs committed in data/pairs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch
from conftest import make_video
from safetensors.torch import load_file

from s3d.config import CONF_DIR, PROJECT_ROOT, compose
from s3d.convert import convert
from s3d.data.pairs import StereoPairs, StereoPairsDataModule, find_pairs
from s3d.depth import build_depth
from s3d.errors import S3DError
from s3d.export import export_checkpoint, load_model
from s3d.export import main as export_main


def train(tmp_path: Path, *overrides: str, multirun: bool = False) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        *(["-m"] if multirun else []),
        "trainer.fast_dev_run=true",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("model", ["seed", "warp"])
def test_fast_dev_run(tmp_path: Path, model: str):
    r = train(tmp_path, f"model={model}")
    assert r.returncode == 0, r.stderr[-3000:]
    log = next(tmp_path.glob("outputs/train/*/train.log")).read_text()
    assert "'train/loss'" in log and "'val/psnr'" in log and "'val/ssim'" in log
    # From training to use: the exported model converts a video, for either input eye.
    exported = next(tmp_path.glob("outputs/train/*/model.safetensors"))
    clip = make_video(tmp_path / "c.mp4", width=64, height=48, frames=3)
    for eye in ("left", "right"):
        out = convert(compose("convert", [f"input={clip}", f"checkpoint={exported}", f"eye={eye}", "quiet=true", f"output={tmp_path / (eye + '.mkv')}"]))[0]
        with av.open(str(out)) as c:
            assert (c.streams.video[0].width, c.streams.video[0].height, c.streams.video[0].frames or 3) == (128, 48, 3)


@pytest.mark.slow  # two trainings in subprocesses; test_fast_dev_run runs one by default
def test_short_run_logs_checkpoints_and_resumes(tmp_path: Path):
    short = [
        "trainer.fast_dev_run=false",
        "trainer.log_every_n_steps=1",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "hydra.run.dir=run1",
    ]
    r = train(tmp_path, *short)
    assert r.returncode == 0, r.stderr[-3000:]
    header = (tmp_path / "run1/csv/version_0/metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "train/mse", "train/ssim", "val/psnr", "val/ssim"} <= set(header)
    ckpts = sorted(p.name for p in (tmp_path / "run1/checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(c.startswith("best-") for c in ckpts)
    more = [s.replace("max_epochs=1", "max_epochs=2").replace("run1", "run2") for s in short]
    r = train(tmp_path, *more, f"ckpt_path={tmp_path / 'run1/checkpoints/last.ckpt'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Restoring states from the checkpoint" in r.stderr + r.stdout + (tmp_path / "run2/train.log").read_text()
    rows = (tmp_path / "run2/csv/version_0/metrics.csv").read_text().splitlines()[1:]
    assert rows and all(row.split(",")[header.index("epoch")] in ("1", "") for row in rows)  # it went on from epoch 1
    # The best checkpoint was exported; the export command gives the same tensors from the .ckpt.
    best = next((tmp_path / "run1/checkpoints").glob("best-*.ckpt"))
    again = tmp_path / "again.safetensors"
    assert export_main([str(best), str(tmp_path / "run1/.hydra/config.yaml"), str(again)]) == 0
    a, b = load_file(str(tmp_path / "run1/model.safetensors")), load_file(str(again))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path: Path):
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Evil()}, ckpt)
    cfg = compose("train")
    with pytest.raises(S3DError, match="not a loadable weights-only checkpoint"):
        export_checkpoint(ckpt, cfg.model, cfg.depth, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_exported_file_naming_a_foreign_class_is_refused(tmp_path: Path):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"s3d": json.dumps({"model": {"_target_": "os.system", "command": "true"}, "depth": {}})})
    with pytest.raises(S3DError, match="refusing to build 'os.system'"):
        load_model(path, tmp_path, torch.device("cpu"))


@pytest.mark.slow
def test_multirun_sweeps_loss_weights(tmp_path: Path):
    r = train(tmp_path, "loss.ssim=0,0.5", multirun=True)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted(tmp_path.glob("outputs/multirun/*/*/.hydra/overrides.yaml"))
    values = sorted(line.split("=")[1] for p in runs for line in p.read_text().splitlines() if "loss.ssim=" in line)
    assert values == ["0", "0.5"]


def test_find_pairs_both_layouts(tmp_path: Path):
    from PIL import Image

    img = Image.new("RGB", (8, 8))
    for side in ("image_0", "image_1"):
        (tmp_path / side).mkdir()
        img.save(tmp_path / side / "a.png")
    (tmp_path / "scene").mkdir()
    img.save(tmp_path / "scene" / "im0.png")
    img.save(tmp_path / "scene" / "im1.png")
    assert [n for n, _, _ in find_pairs(tmp_path)] == ["a", "scene"]
    assert len(find_pairs(PROJECT_ROOT / "data" / "pairs")) == 6


def test_split_by_scene_and_crops():
    dm = StereoPairsDataModule([str(PROJECT_ROOT / "data" / "pairs")], crop=(64, 96), val_pairs=2, samples_per_pair=3)
    dm.setup()
    train_names = {name for name, _, _ in dm.train_set.images}
    val_names = {name for name, _, _ in dm.val_set.images}
    assert not train_names & val_names and len(val_names) == 2 and len(dm.train_set) == 4 * 3
    item = dm.train_set[0]
    assert item["left"].shape == item["right"].shape == (3, 64, 96)


def test_flip_swaps_the_eyes(monkeypatch):
    left, right = torch.rand(3, 8, 8), torch.rand(3, 8, 8)
    ds = StereoPairs.__new__(StereoPairs)
    ds.images, ds.crop, ds.train, ds.jitter, ds.samples_per_pair, ds.maps = [("x", left, right)], (8, 8), True, 0.0, 1, {}
    monkeypatch.setattr("random.random", lambda: 0.0)  # always flip
    item = ds[0]
    assert torch.equal(item["left"], right.flip(-1)) and torch.equal(item["right"], left.flip(-1))


def test_too_few_pairs_is_a_clear_error(tmp_path: Path):
    with pytest.raises(S3DError, match="found 0 stereo pairs"):
        StereoPairsDataModule([str(tmp_path)]).setup()


@pytest.mark.parametrize("group", sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir()))
def test_every_config_group_option_composes_and_instantiates(group: str):
    from hydra.utils import instantiate

    for option in sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")):
        extra = [f"data.root={PROJECT_ROOT}"] if (group, option) == ("data", "films") else []  # root is required
        cfg = compose("train", [f"{group}={option}", "paths.output_dir=/tmp/s3d-test", *extra])
        node = cfg[group]
        if group == "depth":  # depth configs are built by build_depth (it takes vertical_prior off the config)
            if option == "tiny_random":  # the others need weights; their missing-weights error is tested in test_depth.py
                assert build_depth(node).vertical_prior == 0.0
            continue
        if group == "logger" and option == "wandb":
            continue  # instantiating starts a W&B run; covered by the W&B test
        if (group, option) == ("trainer", "gpu") and not torch.cuda.is_available():
            assert node.precision == "bf16-mixed"
            continue  # needs a CUDA device
        assert instantiate(node) is not None


def test_wandb_offline_run_has_metrics_and_image_panels(tmp_path: Path):
    import os

    from PIL import Image

    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    args = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "logger=wandb",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "hydra.run.dir=run",
    ]
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    run = next((tmp_path / "run/wandb").glob("offline-run-*"))
    log = next(run.glob("run-*.wandb")).read_bytes()
    assert b"train/loss" in log and b"val/psnr" in log and b"val/ssim" in log
    panels = list((run / "files/media/images/val").glob("panel_*.png"))
    assert panels
    panel = Image.open(panels[0])
    assert panel.size == (4 * 192, 128)  # input | generated | real | depth, each a 128x192 validation crop
    assert max(panel.convert("L").getextrema()) > 50  # not a black image


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path: Path):
    r = train(
        tmp_path,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.fast_dev_run=false",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "hydra.run.dir=ddp",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    log = (tmp_path / "ddp/train.log").read_text() + (tmp_path / "ddp/train_ddp_process_1.log").read_text()
    assert "distributed_backend=gloo" in r.stderr + r.stdout + log or "gloo" in r.stderr + log
    assert (tmp_path / "ddp/model.safetensors").exists() and (tmp_path / "ddp/checkpoints/last.ckpt").exists()


def test_export_choice_is_checked(tmp_path: Path):
    from s3d.train import train as train_job

    cfg = compose("train", ["export=newest", f"paths.output_dir={tmp_path}"])
    with pytest.raises(S3DError, match="export must be best or last"):
        train_job(cfg)


@pytest.mark.slow  # three trainings in subprocesses; the in-process check below runs by default
def test_init_weights_continues_from_an_exported_model(tmp_path: Path):
    r = train(tmp_path, "model=warp", "hydra.run.dir=first")
    assert r.returncode == 0, r.stderr[-3000:]
    first = tmp_path / "first/model.safetensors"
    # With a zero learning rate the second run's export has the learned tensors it started from
    # (batch-norm running statistics still move in a training step).
    r = train(tmp_path, "model=warp", f"init_weights={first}", "optim.lr=0", "hydra.run.dir=second")
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = load_file(str(first)), load_file(str(tmp_path / "second/model.safetensors"))
    learned = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert a.keys() == b.keys() and len(learned) > 20 and all(torch.equal(a[k], b[k]) for k in learned)
    # Weights of another model are refused with one line naming the file.
    r = train(tmp_path, "model=seed", f"init_weights={first}", "hydra.run.dir=third")
    assert r.returncode != 0 and f"{first}: weights do not fit the model" in r.stderr


def test_weights_of_another_width_are_refused_by_name(tmp_path: Path):
    from hydra.utils import instantiate

    from s3d.export import export_model
    from s3d.io.weights import load_weights

    cfg = compose("train", ["model=seed", f"paths.output_dir={tmp_path}"])
    path = export_model(instantiate(cfg.model), cfg.model, cfg.depth, tmp_path / "m.safetensors")
    narrow = instantiate(compose("train", ["model=seed", "model.width=16", f"paths.output_dir={tmp_path}"]).model)
    with pytest.raises(S3DError, match=r"m\.safetensors: weights do not fit the model: size mismatch"):
        load_weights(narrow, path)


def test_a_model_that_is_its_own_depth_builds_and_exports_no_depth_backend(tmp_path: Path):
    """The train config's default depth (the shipped model) is built for the models that read it, never
    for Lite0, which predicts its own disparity: so a Lite0 run does not depend on an earlier training."""
    from s3d.export import export_model
    from s3d.train import build_module, depth_config

    missing = [f"paths.output_dir={tmp_path}", f"depth.weights={tmp_path / 'no_such.safetensors'}"]
    lite = build_module(compose("train", ["model=lite0", *missing]))
    assert lite.depth is None
    with pytest.raises(S3DError, match="no_such.safetensors"):
        build_module(compose("train", ["model=seed", *missing]))
    cfg = compose("train", ["model=lite0", *missing])
    path = export_model(lite.model, cfg.model, depth_config(cfg, lite.model), tmp_path / "lite.safetensors")
    model, depth = load_model(path, tmp_path, torch.device("cpu"))
    assert depth is None and not model.use_depth and not model.training


def test_init_weights_builds_the_module_from_an_exported_model(tmp_path: Path):
    """In process, what the slow test above checks through train.py: the module starts from the file's tensors,
    and a file of another model is refused in one line naming it."""
    from s3d.export import export_model
    from s3d.train import build_module, depth_config

    cfg = compose("train", ["model=warp", f"paths.output_dir={tmp_path}"])
    first = build_module(cfg)
    with torch.no_grad():
        for p in first.model.parameters():
            p.add_(torch.randn_like(p))  # not what a fresh module starts from
    path = export_model(first.model, cfg.model, depth_config(cfg, first.model), tmp_path / "first.safetensors")
    again = build_module(compose("train", ["model=warp", f"init_weights={path}", f"paths.output_dir={tmp_path}"]))
    a, b = first.model.state_dict(), again.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(S3DError, match=r"first\.safetensors: weights do not fit the model"):
        build_module(compose("train", ["model=seed", f"init_weights={path}", f"paths.output_dir={tmp_path}"]))
