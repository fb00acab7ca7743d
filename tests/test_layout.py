import pytest
import torch

from s3d.layout import ANAGLYPH_METHODS, LAYOUTS, RGBD, anaglyph, pack, pack_rgbd, packed_size, split, wiggle_frames


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("h,w", [(10, 16), (9, 15)])
def test_pack_size(layout, h, w):
    left, right = torch.rand(2, 3, h, w), torch.rand(2, 3, h, w)
    packed = pack_rgbd(left, right[:, :1], layout) if layout in RGBD else pack(left, right, layout)
    assert packed.shape[-2:] == packed_size(layout, h, w)


@pytest.mark.parametrize("layout", ["full_sbs", "full_ou"])
@pytest.mark.parametrize("left_first", [True, False])
def test_full_pack_then_split_returns_the_eyes(layout, left_first):
    left, right = torch.rand(1, 3, 8, 12), torch.rand(1, 3, 8, 12)
    packed = pack(left, right, layout, left_first=left_first)
    a, b = split(packed, layout, left_first=left_first)
    assert torch.equal(a, left) and torch.equal(b, right)


def test_sbs_puts_left_eye_on_the_left_and_ou_on_top():
    left, right = torch.zeros(1, 3, 4, 6), torch.ones(1, 3, 4, 6)
    sbs = pack(left, right, "full_sbs")
    assert sbs[..., :6].max() == 0 and sbs[..., 6:].min() == 1
    ou = pack(left, right, "half_ou")
    assert ou.shape[-2:] == (4, 6) and ou[..., :2, :].max() == 0 and ou[..., 2:, :].min() == 1


@pytest.mark.parametrize("layout", ["half_sbs", "half_ou"])
def test_half_split_restores_aspect(layout):
    smooth = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32)
    a, b = split(pack(smooth, smooth, layout), layout)
    assert a.shape == smooth.shape and (a - smooth).abs().max() < 0.05


def test_anaglyph_channels():
    left, right = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    col = anaglyph(left, right, "color")
    assert torch.equal(col[:, 0], left[:, 0]) and torch.equal(col[:, 1:], right[:, 1:])
    half = anaglyph(left, right, "half_color")
    assert torch.allclose(half[:, 0], 0.299 * left[:, 0] + 0.587 * left[:, 1] + 0.114 * left[:, 2])
    # Dubois: a white left eye and a black right eye make a red-dominated, non-cyan image.
    dub = anaglyph(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), "dubois")
    assert dub[:, 0].min() > 0.8 and dub[:, 1:].max() < 0.05
    for method in ANAGLYPH_METHODS:
        out = anaglyph(left, right, method)
        assert out.shape == left.shape and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError):
        anaglyph(left, right, "purple")


def test_wiggle_frames_loop():
    left, right = torch.zeros(3, 2, 2), torch.ones(3, 2, 2)
    two = wiggle_frames(left, right, 1)
    assert len(two) == 2 and torch.equal(two[0], left) and torch.equal(two[1], right)
    smooth = wiggle_frames(left, right, 4)
    assert len(smooth) == 8 and smooth[2].mean() == pytest.approx(0.5)


@pytest.mark.parametrize("layout", ["full_cross", "half_cross"])
def test_cross_eyed_is_side_by_side_with_the_right_eye_first(layout):
    left, right = torch.zeros(1, 3, 4, 6), torch.ones(1, 3, 4, 6)
    cross = pack(left, right, layout)
    assert torch.equal(cross, pack(right, left, layout.replace("cross", "sbs")))
    assert cross[..., : cross.shape[-1] // 2].min() == 1 and cross[..., cross.shape[-1] // 2 :].max() == 0
    a, b = split(cross, layout)
    assert torch.equal(a, left) and torch.equal(b, right)


@pytest.mark.parametrize("layout,width", [("full_rgbd", 20), ("half_rgbd", 10)])
def test_pack_rgbd_puts_the_depth_beside_the_eye_as_grey(layout: str, width: int):
    image, near = torch.rand(2, 3, 6, 10), torch.linspace(0, 1, 10).expand(2, 1, 6, 10)
    packed = pack_rgbd(image, near, layout)
    assert packed.shape == (2, 3, 6, width) == (2, 3, *packed_size(layout, 6, 10))
    depth = packed[..., packed.shape[-1] // 2 :]
    assert torch.equal(depth[:, 0], depth[:, 1]) and torch.equal(depth[:, 1], depth[:, 2])
    assert (depth[..., 1:] >= depth[..., :-1] - 1e-6).all() and depth[..., 0].max() < 0.1 < 0.9 < depth[..., -1].min()  # far left, near right
    if layout == "full_rgbd":
        assert torch.equal(packed[..., :10], image) and torch.equal(depth[:, :1], near)
    with pytest.raises(ValueError, match="use pack_rgbd"):
        pack(image, image, layout)
    with pytest.raises(ValueError, match="one eye and its depth"):
        split(packed, layout)
