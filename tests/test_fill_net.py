"""The learned fill (issue 24): the network repaints the holes and the pixels beside them, nothing else; tiles give
what the whole frame gives; both directions and both eye types; training patches; the conversion path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import textured_frame
from PIL import Image

from s3d.config import PROJECT_ROOT
from s3d.data.fill_patches import FillPatchesDataModule, cut_patches, picture_sample, real_sample, write_patches
from s3d.depth.base import cpu_has_bf16
from s3d.export import export_model, load_fill_net
from s3d.io.image import to_tensor
from s3d.losses import ViewLoss, masked_change, shift_rows
from s3d.models.fill import FillNet, fill_inputs, fill_inputs_reference, fill_region, fill_tiles, repaint, tile_origins
from s3d.module import FillModule
from s3d.pipeline import StereoPipeline, StereoSettings, render_view, render_view_uint8
from s3d.stereo.kernel import HAVE_NUMBA


def _net(seed: int = 0) -> FillNet:
    torch.manual_seed(seed)
    net = FillNet().eval()
    torch.nn.init.normal_(net.head.weight, std=0.2)  # an untrained head is zero: give it something to paint
    return net


def _scene(h: int = 64, w: int = 96) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 frames, the same as float, and a left-view disparity with two near blocks."""
    frames = torch.from_numpy(textured_frame(h, w))[None]
    d = torch.zeros(1, 1, h, w)
    d[..., 20:34] = 6.0
    d[..., 60:70] = 9.0
    return frames, to_tensor(frames, torch.device("cpu")), d


def test_holes_and_target_disparity_come_from_the_source_disparity():
    _, _, d = _scene()
    holes, target = fill_inputs(d, 1)
    # the first block lands at 14-27: right of it, 28-33 are seen by no left pixel; their background is 0 px
    assert holes[0, 0, 0, 25:40].nonzero().flatten().add(25).tolist() == [28, 29, 30, 31, 32, 33]
    assert float(target[0, 0, 0, 28:34].abs().max()) == 0.0 and float(target[0, 0, 0, 20]) == 6.0
    assert fill_region(holes, 2)[0, 0, 0, 26:36].all() and not fill_region(holes, 2)[0, 0, 0, 36]


@pytest.mark.skipif(not HAVE_NUMBA, reason="the kernel needs numba")
def test_the_cpu_kernel_finds_the_holes_and_target_disparity_the_reference_finds():
    g = torch.Generator().manual_seed(0)
    for trial in range(6):
        d = torch.rand(2, 1, 29, 77, generator=g) * 12 - 2  # negative too: points behind the screen
        if trial % 2:
            d = d.round()  # exact landings: one pixel written, ties between neighbours
        d[0, 0, :, 20:31] += 15  # a near block: holes a dozen px wide
        for direction in (1, -1):
            (holes, target), (ref_holes, ref_target) = fill_inputs(d, direction), fill_inputs_reference(d, direction)
            assert ref_holes.any() and torch.equal(holes, ref_holes) and torch.equal(target, ref_target)


def test_the_cells_of_the_grown_holes_are_found_without_growing_the_frame():
    g = torch.Generator().manual_seed(1)
    for h, w, tile, band in ((70, 131, (64, 16), 4), (33, 47, (8, 5), 3), (64, 64, (16, 16), 0)):
        holes = torch.rand(2, 1, h, w, generator=g) > 0.995
        cells = F.max_pool2d(fill_region(holes, band).float(), tile, tile, ceil_mode=True)[:, 0].nonzero()
        expected = torch.stack((cells[:, 0], cells[:, 1] * tile[0], cells[:, 2] * tile[1]), 1)
        assert len(expected) and torch.equal(tile_origins(holes, tile, band), expected)
    with pytest.raises(ValueError, match="context must reach at least the band"):
        fill_tiles(_net(), torch.rand(1, 3, 8, 8), holes[:1, :, :8, :8], torch.zeros(1, 1, 8, 8), context=(16, 2))


def test_an_untrained_net_keeps_the_first_fill_and_a_net_changes_only_its_region():
    _, image, d = _scene()
    holes, target = fill_inputs(d, 1)
    assert torch.equal(FillNet()(image, holes, target).pred, image)  # zero head: the smooth fill as it was
    out = _net()(image, holes, target)
    changed = (out.pred != image).any(1, keepdim=True)
    assert changed.any() and not (changed & ~out.region).any()


def test_tiles_give_the_whole_frame_result_where_a_window_is_the_frame():
    net = _net()
    image = torch.rand(1, 3, 96, 48)  # one window (64 + 2 x 16 rows, 16 + 2 x 16 columns): every cell sees the whole frame
    d = torch.zeros(1, 1, 96, 48)
    d[..., 10:20], d[..., 30:40] = 6.0, 9.0
    holes, target = fill_inputs(d, 1)
    assert torch.allclose(fill_tiles(net, image, holes, target), net(image, holes, target).pred, atol=1e-6)


def test_uint8_frames_in_place_of_floats_and_no_holes_no_work():
    net = _net()
    frames, image, d = _scene()
    holes, target = fill_inputs(d, 1)
    as_bytes = fill_tiles(net, frames.permute(0, 3, 1, 2), holes, target)  # a view of (B, H, W, 3) frames
    assert as_bytes.dtype == torch.uint8
    assert float((as_bytes.float() / 255 - fill_tiles(net, image, holes, target)).abs().max()) <= 1 / 255 + 1e-6
    nothing = torch.zeros_like(holes)
    assert torch.equal(fill_tiles(net, image, nothing, target), image)


def test_a_left_eye_from_the_right_is_the_mirror_of_a_right_eye_from_the_left():
    net = _net()
    _, image, d = _scene()
    mirrored = repaint(net, image.flip(-1), d.flip(-1), 1).flip(-1)
    assert torch.equal(repaint(net, image, d, -1), mirrored)


def test_the_conversion_path_renders_learned_on_the_cpu_kernel_as_in_torch():
    net = _net()
    frames, image, d = _scene()
    for direction in (1, -1):
        kernel = render_view_uint8(frames, d, direction, "bicubic", "learned", net).permute(0, 3, 1, 2).float() / 255
        torch_path = render_view(image, d, direction, "bicubic", "learned", net)
        assert float((kernel - torch_path.clamp(0, 1)).abs().max()) <= 2 / 255
        smooth = render_view(image, d, direction, "bicubic", "smooth")
        assert float((torch_path - smooth).abs().max()) > 0.01  # the network did repaint something
    pipeline = StereoPipeline(None, StereoSettings(fill="learned"), torch.device("cpu"))  # a repacked stereo photo renders nothing
    with pytest.raises(ValueError, match="fill=learned needs the fill network"):
        pipeline.render(frames, image, torch.rand(1, 1, *image.shape[-2:]), even=False)


def test_training_patches_sit_on_holes_and_split_by_source(tmp_path: Path):
    frames, image, d = _scene(128, 160)
    g = torch.Generator().manual_seed(0)
    real = real_sample(image, image.roll(-3, -1), d)
    picture = picture_sample(image, d)
    for sample in (real, picture):
        patches = cut_patches(*sample, 4, g, size=48)
        assert len(patches) == 4 and all(p.holes.any() and p.warped.dtype == torch.uint8 for p in patches)
    assert cut_patches(image, torch.zeros(1, 1, 128, 160, dtype=torch.bool), d, image, 4, g, size=48) == []
    path = tmp_path / "patches.safetensors"
    n = write_patches(iter([("a", "real", real), ("b", "picture", picture)]), path, per_sample=3)
    dm = FillPatchesDataModule(str(path), val_names=["b"], batch_size=2)
    dm.setup()
    assert n == 6 and len(dm.train_set) == 3 and len(dm.val_set) == 3
    item = dm.val_set[0]
    assert item["warped"].shape == (3, 96, 96) and item["holes"].dtype == torch.bool


def test_the_exported_net_loads_for_conversion_and_a_foreign_file_is_refused(tmp_path: Path):
    net = _net()
    path = export_model(net, {"_target_": "s3d.models.fill.FillNet"}, None, tmp_path / "fill.safetensors")
    loaded = load_fill_net(path, torch.device("cpu"))
    assert loaded.bf16 == cpu_has_bf16()  # bf16 autocast only where the CPU computes it natively
    _, image, d = _scene()
    assert loaded.head.weight.is_contiguous(memory_format=torch.channels_last)  # the CPU's faster layout
    loaded.bf16 = False
    assert float((repaint(loaded, image, d) - repaint(net, image, d)).abs().max()) < 1e-5  # the same sums in another order
    loaded.bf16 = True
    assert float((repaint(loaded, image, d) - repaint(net, image, d)).abs().max()) < 0.05  # bf16: a few levels at most
    with pytest.raises(Exception, match="no such fill network"):
        load_fill_net(tmp_path / "missing.safetensors", torch.device("cpu"))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "convert.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_convert_py_fill_learned_repaints_only_beside_the_holes_and_a_missing_net_is_one_line(tmp_path: Path):
    photo = tmp_path / "photo.png"
    Image.fromarray(textured_frame(96, 128)).save(photo)
    net = export_model(_net(), {"_target_": "s3d.models.fill.FillNet"}, None, tmp_path / "fill.safetensors")
    eyes = {}
    for fill in ("smooth", "learned"):
        out = tmp_path / f"{fill}.png"
        r = _cli(f"input={photo}", f"output={out}", "depth=tiny_random", "divergence=8", f"fill={fill}", f"fill_weights={net}", "overwrite=true", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        eyes[fill] = np.asarray(Image.open(out)).astype(int)[:, 128:]  # the right eye of the side-by-side photo
    changed = np.abs(eyes["learned"] - eyes["smooth"]).max(-1) > 0
    assert changed.any() and changed.mean() < 0.5  # the network's cells only, never the whole eye
    missing = tmp_path / "nope.safetensors"
    r = _cli(f"input={photo}", f"output={tmp_path / 'o.png'}", "depth=tiny_random", "fill=learned", f"fill_weights={missing}", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [f"s3d: error: {missing}: no such fill network (fill_weights=)"]
    assert not (tmp_path / "o.png").exists()


def test_the_shipped_net_does_not_streak_where_the_depth_claims_a_jump_the_picture_lacks():
    """Issue 24, robustness: wrong depth (a near block on a film frame that has no such object). The truth is the
    frame itself; the shipped fill must stay about as calm from row to row as the smooth fill, and calmer than
    the mirrored texture, which shatters into streaks."""
    from s3d.evaluate import streaks
    from s3d.io.video import read_frames_at

    net = load_fill_net(PROJECT_ROOT / "weights" / "s3d_fill.safetensors", torch.device("cpu"))
    frame = torch.from_numpy(read_frames_at(PROJECT_ROOT / "samples" / "big_buck_bunny_432_433s_720p.webm", [12])[0])
    frames = torch.nn.functional.interpolate(frame.permute(2, 0, 1)[None].float(), size=(360, 640), mode="area")
    frames = frames.round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    d = torch.zeros(1, 1, 360, 640)
    d[..., 80:280, 200:330] = 16.0  # a near block the picture does not show
    d[..., 40:200, 420:520] = 10.0
    holes, _ = fill_inputs(d, 1)
    real = frames.permute(0, 3, 1, 2).float() / 255
    calm = {}
    for fill in ("smooth", "mirror", "learned"):
        eye = render_view_uint8(frames, d, 1, "bicubic", fill, net).permute(0, 3, 1, 2).float() / 255
        calm[fill] = streaks(eye, real, holes)
    assert calm["learned"] <= 1.25 * calm["smooth"] and calm["learned"] < calm["mirror"], calm


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_learned_fill_on_cuda_gives_the_cpu_result():
    net = _net()
    _, image, d = _scene()
    cuda = torch.device("cuda")
    for direction in (1, -1):
        on_cpu = render_view(image, d, direction, "bicubic", "learned", net)
        on_gpu = render_view(image.to(cuda), d.to(cuda), direction, "bicubic", "learned", net.to(cuda)).cpu()
        net.cpu()
        assert float((on_gpu - on_cpu).abs().max()) < 1e-3


def test_gradcheck_fill_net_float64():
    """What trains: the repainted eye's gradient with respect to the warped eye and the weights, in float64."""
    torch.manual_seed(0)
    net = FillNet(width=4, depth=1, tail=1).double().eval()
    torch.nn.init.normal_(net.head.weight, std=0.05)
    warped = (0.3 + 0.4 * torch.rand(1, 3, 8, 12, dtype=torch.float64)).requires_grad_()
    holes = torch.zeros(1, 1, 8, 12, dtype=torch.bool)
    holes[..., 5:7] = True
    d = torch.full((1, 1, 8, 12), 3.0, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda w: net(w, holes, d).pred, (warped,), eps=1e-6, atol=1e-5)
    loss = net(warped, holes, d).pred.sum()
    loss.backward()
    assert float(net.head.weight.grad.abs().sum()) > 0  # the head learns from the region's pixels


def test_shift_rows_moves_each_image_along_its_rows_and_its_gradient_checks():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).reshape(2, 3, 4, 6)
    moved = shift_rows(x, torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(moved[0, ..., 1:], x[0, ..., :-1]) and torch.allclose(moved[0, ..., 0], x[0, ..., 0])  # edge repeats
    assert torch.allclose(moved[1], x[1])
    half = shift_rows(x, torch.tensor([0.5, -0.5], dtype=torch.float64))
    assert torch.allclose(half[0, ..., 1:], (x[0, ..., 1:] + x[0, ..., :-1]) / 2)
    assert torch.allclose(half[1, ..., :-1], (x[1, ..., 1:] + x[1, ..., :-1]) / 2)
    with pytest.raises(ValueError, match="one shift per image"):
        shift_rows(x, torch.zeros(3))
    x = x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: shift_rows(t, torch.tensor([0.3, -0.7], dtype=torch.float64)), (x,))


def test_the_fill_modules_consistency_term_is_zero_for_a_net_that_moves_with_its_input_and_trains_the_head():
    """An untrained net (zero head) repaints nothing: its fill moves exactly with its input. A net that paints
    is restless; the term joins the loss in training only, and its gradient reaches the head."""
    torch.manual_seed(0)
    warped = torch.rand(2, 3, 32, 48)
    holes = torch.zeros(2, 1, 32, 48, dtype=torch.bool)
    holes[..., 20:26] = True
    batch = {"warped": warped, "holes": holes, "disparity": torch.full((2, 1, 32, 48), 6.0), "target": torch.rand(2, 3, 32, 48)}
    calm = FillModule(FillNet(), ViewLoss(), consistency=1.0).train()
    _, _, terms = calm.model_step(batch)
    assert float(terms["consistency"].detach()) < 1e-6
    module = FillModule(_net(), ViewLoss(), consistency=1.0).train()
    _, total, terms = module.model_step(batch)
    assert float(terms["consistency"].detach()) > 1e-3
    total.backward()
    assert float(module.model.head.weight.grad.abs().sum()) > 0
    assert masked_change(warped, warped + 1, torch.zeros_like(holes)) == 0
    _, _, terms = module.eval().model_step(batch)
    assert "consistency" not in terms
