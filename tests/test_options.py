"""Every conversion option is checked before any work: one `s3d: error:` line naming the option and the value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from s3d.cli import config_error
from s3d.config import compose
from s3d.errors import S3DError
from s3d.options import CHOICES, RANGES, check_convert_options

ROOT = Path(__file__).resolve().parents[1]


def _convert(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "convert.py", *args], cwd=ROOT, capture_output=True, text=True)


def test_mistyped_options_are_one_line_from_the_command_line(tmp_path):
    from PIL import Image

    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 48), (90, 120, 30)).save(photo)
    cases = {
        "layout=weird": "s3d: error: layout must be one of full_sbs, half_sbs, full_ou, half_ou, full_cross, half_cross, full_rgbd, half_rgbd, vr180, anaglyph; got 'weird'",
        "divergence=-3": "s3d: error: divergence must be a number >= 0.0 and <= 20.0, got -3",
        "video.crff=20": "s3d: error: unknown option 'video.crff' (python convert.py --help lists every option)",
        "depth=midas": "s3d: error: depth=midas: no such depth; one of auto, densedepth, depth_anything_v2_base, depth_anything_v2_large, depth_anything_v2_small, s3d_lite0, tiny_random",
    }
    for arg, line in cases.items():
        run = _convert(tmp_path, f"input={photo}", "depth=tiny_random" if not arg.startswith("depth=") else "quiet=true", arg)
        assert run.returncode == 1, arg
        assert run.stderr.strip().splitlines() == [line], arg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]  # nothing written


def test_help_lists_the_options_with_their_comments():
    run = _convert(Path("."), "--help")
    assert run.returncode == 0 and "divergence: 2.0" in run.stdout and "3D strength" in run.stdout


@pytest.mark.parametrize("key", sorted(RANGES))
def test_every_number_option_refuses_a_value_out_of_range(key: str):
    lo, hi, whole = RANGES[key]
    bad = [lo - 1, "many"] + ([hi + 1] if hi is not None else [])
    if whole:
        bad.append(lo + 0.5)
    depth = ["depth=s3d_lite0"] if key.startswith("depth.") else []  # depth=auto's keys are its two networks' own
    check_convert_options(compose("convert", []))  # the defaults pass
    for value in bad:
        with pytest.raises(S3DError, match=rf"^{key} must be a"):
            check_convert_options(compose("convert", [*depth, f"{key}={value}"]))


def test_keyframes_takes_auto_or_a_whole_number_from_one():
    for good in ("auto", 1, 3):
        check_convert_options(compose("convert", [f"temporal.keyframes={good}"]))
    for bad in (0, 1.5, "many"):
        with pytest.raises(S3DError, match=r"^temporal.keyframes must be a whole number >= 1"):
            check_convert_options(compose("convert", [f"temporal.keyframes={bad}"]))


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_every_choice_option_refuses_an_unknown_value(key: str):
    for good in CHOICES[key]:
        check_convert_options(compose("convert", [f"{key}={good}"]))
    with pytest.raises(S3DError, match=rf"^{key} must be one of .*; got 'nonsense'$"):
        check_convert_options(compose("convert", [f"{key}=nonsense"]))


def test_config_errors_of_other_kinds_stay_one_line():
    from hydra.errors import HydraException

    try:
        compose("convert", ["layout=[a"])  # an override Hydra cannot parse
    except HydraException as err:
        assert config_error(err, "t") == "no viable alternative at input '[a'"
    else:
        raise AssertionError("Hydra parsed a broken override")


@pytest.mark.parametrize(
    "tool,args,code,line",
    [
        ("s3d.models.ship", ["/no/such.safetensors", "out.safetensors"], 1, "s3d: error: /no/such.safetensors: not a readable safetensors file"),
        ("s3d.models.ship", [], 2, "error: the following arguments are required: src, dst"),
        ("s3d.export", ["/no/such.ckpt", "/no/config.yaml", "out.safetensors"], 1, "s3d: error: /no/config.yaml: no such run config"),
        ("s3d.bench", ["clips.nope=1"], 1, "s3d: error: "),
    ],
)
def test_the_file_tools_and_the_bench_answer_in_one_line(tmp_path, tool, args, code, line):
    """One command-line style per kind of tool (s3d/cli.py): file tools take paths (argparse), jobs take key=value."""
    run = subprocess.run([sys.executable, "-m", tool, *args], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == code and line in run.stderr.strip().splitlines()[-1]
    assert "Traceback" not in run.stderr and not list(tmp_path.iterdir())
