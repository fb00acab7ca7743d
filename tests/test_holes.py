"""Training samples for a learned fill (s3d.data.holes): holes where conversion makes them, the picture as truth."""

from __future__ import annotations

import pytest
import torch
from conftest import textured_frame

from s3d.data.holes import warp_holes
from s3d.io.image import to_tensor


def _scene(h: int = 24, w: int = 96, near: float = 6.0):
    right = to_tensor(torch.from_numpy(textured_frame(h, w))[None], torch.device("cpu"))
    d = torch.zeros(1, 1, h, w)
    d[..., 40:60] = near  # a near block in the right eye's view
    return right, d


def test_holes_sit_on_the_background_side_and_the_rest_comes_back():
    right, d = _scene()
    s = warp_holes(right, d)
    cols = s.holes[0, 0, 0].nonzero().flatten().tolist()
    # seen from the left the block sits 6 px further right, hiding the background just right of it: columns 60-65
    assert cols == list(range(60, 66))
    assert s.holes.shape == (1, 1, 24, 96) and torch.equal(s.target, right)
    kept = ~s.holes.expand_as(right)
    assert float((s.warped - right)[kept].abs().max()) < 1e-5  # every other pixel is the picture again
    assert float((s.warped - right)[~kept].abs().mean()) > 0.01  # the holes are not (the fill must invent them)


def test_no_depth_no_holes_and_shapes_are_checked():
    right, d = _scene(near=0.0)
    s = warp_holes(right, d)
    assert not s.holes.any() and torch.allclose(s.warped, right, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected right \(B, 3, H, W\)"):
        warp_holes(right[:, :2], d)
