import pytest
import torch

from s3d.stereo import backward_warp, fill_from_background, forward_disparity, nearness_to_disparity, synthesize_view


def ramp_image(b=1, c=3, h=4, w=32):
    x = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    return (x + torch.arange(c, dtype=torch.float32).view(1, c, 1, 1) * 100).expand(b, c, h, w).clone()


@pytest.mark.parametrize("d", [1.0, 3.0, 5.0])
def test_constant_disparity_moves_pixels_by_d(d):
    img = ramp_image()
    disp = torch.full((1, 1, 4, 32), d)
    right = synthesize_view(img, disp, direction=1)
    # x_right = x_left - d: the right eye at x shows the left eye's pixel x + d.
    assert torch.allclose(right[..., : 32 - int(d)], img[..., int(d) :])
    left = synthesize_view(img, disp, direction=-1)
    assert torch.allclose(left[..., int(d) :], img[..., : 32 - int(d)])


def test_subpixel_disparity_interpolates():
    img = ramp_image()
    out = backward_warp(img, torch.full((1, 1, 4, 32), 2.5), direction=1)
    assert torch.allclose(out[..., 5:20], img[..., 5:20] + 2.5, atol=1e-4)


def test_zero_divergence_gives_identical_views():
    img = torch.rand(2, 3, 16, 24)
    near = torch.rand(2, 1, 16, 24)
    d = nearness_to_disparity(near, 24, divergence=0.0, convergence=0.5)
    assert torch.allclose(synthesize_view(img, d, 1), img, atol=1e-6)
    assert torch.allclose(synthesize_view(img, d, -1), img, atol=1e-6)


def test_disparity_range_and_screen_plane():
    near = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3)
    d = nearness_to_disparity(near, width=1000, divergence=2.0, convergence=0.5)
    assert d.flatten().tolist() == pytest.approx([-10.0, 0.0, 10.0])
    with pytest.raises(ValueError):
        nearness_to_disparity(near, 1000, 2.0, 1.5)


def test_occlusion_filled_from_background_not_foreground():
    # Background colour 0 with disparity 1, a foreground square of colour 1 with disparity 6.
    w = 40
    img = torch.zeros(1, 1, 1, w)
    disp = torch.ones(1, 1, 1, w)
    img[..., 15:25] = 1.0
    disp[..., 15:25] = 6.0
    right = synthesize_view(img, disp, direction=1)
    # The foreground lands at [9, 19); the gap it opens on its right, [19, 24), shows background.
    assert torch.all(right[..., 10:18] == 1.0)
    assert torch.all(right[..., 19:24] == 0.0)
    assert right.sum() == pytest.approx(10.0, abs=1.0)  # the foreground is not smeared wider


def test_forward_disparity_nearest_wins_and_marks_holes():
    disp = torch.tensor([[[[0.0, 0.0, 3.0, 0.0, 0.0, 0.0]]]])
    target, valid = forward_disparity(disp, direction=1)
    # The near pixel (x=2, d=3) lands at x=-1: outside; x=2 is then a hole.
    assert not valid[0, 0, 0, 2]
    assert valid[0, 0, 0, [0, 1, 3, 4, 5]].all()


def test_fill_takes_smaller_disparity_side():
    img = torch.tensor([[[[5.0, 0.0, 0.0, 9.0]]]])
    disp = torch.tensor([[[[1.0, 0.0, 0.0, 7.0]]]])
    valid = torch.tensor([[[[True, False, False, True]]]])
    filled, fdisp = fill_from_background(img, disp, valid)
    assert filled.flatten().tolist() == [5.0, 5.0, 5.0, 9.0]
    assert fdisp.flatten().tolist() == [1.0, 1.0, 1.0, 7.0]


def test_backward_warp_gradcheck_float64():
    img = torch.rand(1, 2, 3, 6, dtype=torch.float64, requires_grad=True)
    disp = (torch.rand(1, 1, 3, 6, dtype=torch.float64) * 2 + 0.3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda i, d: backward_warp(i, d, 1), (img, disp), eps=1e-6, atol=1e-4)


def test_shape_checks():
    with pytest.raises(ValueError):
        synthesize_view(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 9))


def test_fill_mirrors_background_texture_into_the_hole():
    # Background texture 1..4 on the left (disparity 0), a 3-pixel hole, foreground (disparity 5) on the right.
    img = torch.tensor([[[[1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 9.0]]]])
    disp = torch.tensor([[[[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0]]]])
    valid = torch.tensor([[[[True, True, True, True, False, False, False, True]]]])
    mirrored, _ = fill_from_background(img, disp, valid)
    assert mirrored.flatten().tolist() == [1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 2.0, 9.0]
    stretched, _ = fill_from_background(img, disp, valid, mirror=False)
    assert stretched.flatten().tolist() == [1.0, 2.0, 3.0, 4.0, 4.0, 4.0, 4.0, 9.0]
    # A background strip narrower than the hole: the reflection would reach the nearer object at x=0, so
    # the pixels past the strip take the edge pixel instead. The hole is on the right-hand side here.
    img = torch.tensor([[[[7.0, 2.0, 0.0, 0.0, 0.0, 6.0, 5.0]]]])
    disp = torch.tensor([[[[4.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]]]])
    valid = torch.tensor([[[[True, True, False, False, False, True, True]]]])
    filled, fdisp = fill_from_background(img, disp, valid)
    assert filled.flatten().tolist() == [7.0, 2.0, 2.0, 2.0, 2.0, 6.0, 5.0]  # left (1.0) is background (ties go left)
    img2 = torch.tensor([[[[7.0, 9.0, 0.0, 0.0, 0.0, 6.0, 5.0]]]])
    disp2 = torch.tensor([[[[1.0, 4.0, 0.0, 0.0, 0.0, 1.0, 1.0]]]])
    filled2, _ = fill_from_background(img2, disp2, valid)
    assert filled2.flatten().tolist() == [7.0, 9.0, 6.0, 5.0, 6.0, 6.0, 5.0]  # right side mirrored: 6, 5, then x=7 is outside -> 6


def test_bicubic_keeps_a_half_pixel_shift_sharp():
    torch.manual_seed(0)
    img = torch.rand(1, 3, 16, 64)
    grad = lambda x: float(((x[..., 1:] - x[..., :-1]) ** 2).mean())  # noqa: E731
    half = torch.full((1, 1, 16, 64), 0.5)
    bilinear, bicubic = synthesize_view(img, half, mode="bilinear"), synthesize_view(img, half, mode="bicubic")
    assert grad(bicubic[..., 4:-4]) > 1.3 * grad(bilinear[..., 4:-4])
    whole = torch.full((1, 1, 16, 64), 3.0)
    for mode in ("bilinear", "bicubic"):  # whole-pixel shifts read the source exactly either way
        assert torch.allclose(synthesize_view(img, whole, mode=mode)[..., :-6], img[..., 3:-3], atol=1e-5)


def test_smooth_holes_averages_each_hole_column_over_rows_and_keeps_the_rest():
    from s3d.stereo.warp import smooth_holes

    image = torch.arange(5.0).view(1, 1, 5, 1).expand(1, 1, 5, 2).clone()  # rows 0..4, two columns
    holes = torch.zeros(1, 1, 5, 2, dtype=torch.bool)
    holes[..., 1:4, 0] = True  # rows 1-3 of column 0 are a hole
    out = smooth_holes(image, holes, 1)
    assert out[0, 0, :, 0].tolist() == [0.0, 1.5, 2.0, 2.5, 4.0]  # row 1: (1 + 2) / 2; row 2: (1 + 2 + 3) / 3; row 3: (2 + 3) / 2
    assert torch.equal(out[..., 1], image[..., 1]) and torch.equal(smooth_holes(image, holes, 0), image)
    edge = torch.zeros(1, 1, 3, 1, dtype=torch.bool)
    edge[..., 0, 0] = True  # a hole in the top row: the frame's edge row repeats (counted again), as the kernel does
    assert smooth_holes(torch.tensor([[[[6.0], [0.0], [0.0]]]]), edge, 2)[0, 0, 0, 0] == 6.0
