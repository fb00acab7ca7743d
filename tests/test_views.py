"""Views cut from equirectangular and mesh-projected panoramas: geometry read back from coded pixels."""

from __future__ import annotations

import math

import pytest
import torch

from s3d.data.views import (
    equirect_to_cylindrical,
    equirect_to_perspective,
    equirect_to_view,
    focal_px,
    lonlat_inside,
    mesh_to_view,
    mesh_uv,
    sample_equirect,
    stereo_views,
    view_lonlat,
)

torch.set_num_threads(1)


def coded_equirect(h: int = 360, w: int = 720, lon_range=(-180.0, 180.0), lat_range=(-90.0, 90.0)) -> torch.Tensor:
    """``(1, 3, h, w)``: each pixel holds ``cos(lon), sin(lon), lat / 90`` of its centre (smooth across
    the +-180 seam, so interpolation there stays meaningful)."""
    lon = lon_range[0] + (torch.arange(w, dtype=torch.float64) + 0.5) * (lon_range[1] - lon_range[0]) / w
    lat = lat_range[1] - (torch.arange(h, dtype=torch.float64) + 0.5) * (lat_range[1] - lat_range[0]) / h
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    rad = torch.deg2rad(lon)
    return torch.stack((torch.cos(rad), torch.sin(rad), lat / 90))[None].float()


def decode(view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 3, h, w)`` coded view -> longitude, latitude ``(B, h, w)`` in degrees."""
    return torch.rad2deg(torch.atan2(view[:, 1], view[:, 0])), view[:, 2] * 90


def angle_diff(a, b):
    return (torch.as_tensor(a) - torch.as_tensor(b) + 180) % 360 - 180


H, W = 63, 81  # odd: a centre pixel, a middle row
EQUI = coded_equirect()


@pytest.mark.parametrize("yaw", [0.0, 37.0, 90.0, -135.0, 179.0, 180.0])
@pytest.mark.parametrize("antialias", [False, True])
def test_centre_reads_the_yaw_and_the_edges_yaw_plus_minus_half_the_fov(yaw, antialias):
    fov = 90.0
    lon, lat = decode(equirect_to_perspective(EQUI, yaw, 0.0, fov, (H, W), antialias=antialias))
    assert abs(angle_diff(lon[0, H // 2, W // 2], yaw)) < 0.05
    assert abs(lat[0, H // 2, W // 2]) < 0.05
    # the outermost pixel centres lie half a pixel inside the edges at +-fov/2
    f = focal_px(fov, W)
    inner = math.degrees(math.atan((W / 2 - 0.5) / f))
    assert abs(angle_diff(lon[0, H // 2, 0], yaw - inner)) < 0.05
    assert abs(angle_diff(lon[0, H // 2, -1], yaw + inner)) < 0.05
    half_pixel = math.degrees(0.5 / f) * math.cos(math.radians(fov / 2)) ** 2
    assert abs(angle_diff(lon[0, H // 2, 0], yaw - fov / 2)) < half_pixel + 0.05
    assert abs(angle_diff(lon[0, H // 2, -1], yaw + fov / 2)) < half_pixel + 0.05


def test_longitude_wraps_at_180():
    view = equirect_to_perspective(EQUI, 180.0, 0.0, 60.0, (H, W), antialias=False)
    lon, _ = decode(view)
    row = lon[0, H // 2]
    assert row[: W // 2].gt(100).all() and row[W // 2 + 1 :].lt(-100).all()  # west of the seam, then east of it
    steps = angle_diff(row[1:], row[:-1])
    assert steps.gt(0).all()  # no flat run (clamped at the edge) and no jump at the seam
    assert (steps.max() - steps.min()) < 0.2
    assert view[0, :2].norm(dim=0).gt(0.999).all()  # no average of the image's opposite edges


@pytest.mark.parametrize("projection", ["perspective", "cylindrical"])
def test_pitch_zero_keeps_the_horizon_on_the_middle_row(projection):
    _, lat = decode(equirect_to_view(EQUI, torch.tensor([0.0, 100.0, -60.0]), 0.0, 80.0, (H, W), projection, antialias=False))
    assert lat[:, H // 2].abs().max() < 0.05
    assert lat[:, 0].gt(10).all() and lat[:, -1].lt(-10).all()  # up is up


def test_pitch_moves_the_centre_up():
    lon, lat = decode(equirect_to_perspective(EQUI, 20.0, 25.0, 70.0, (H, W), antialias=False))
    assert abs(lat[0, H // 2, W // 2] - 25) < 0.05 and abs(angle_diff(lon[0, H // 2, W // 2], 20)) < 0.05


def test_cylindrical_rows_have_one_latitude_and_even_longitude_steps():
    lon, lat = decode(equirect_to_cylindrical(EQUI, 45.0, 0.0, 90.0, (H, W), antialias=False))
    assert (lat[0].amax(dim=1) - lat[0].amin(dim=1)).max() < 0.05  # rows match in both eyes of ODS stereo
    steps = angle_diff(lon[0, 5, 1:], lon[0, 5, :-1])
    assert abs(steps.mean() - 90 / W) < 0.01 and (steps.max() - steps.min()) < 0.02


def test_view_lonlat_matches_the_sampled_pixels():
    ll = view_lonlat(torch.tensor([10.0, -170.0]), 5.0, 75.0, (H, W))
    lon, lat = decode(sample_equirect(EQUI, ll))
    assert angle_diff(lon, ll[..., 0]).abs().max() < 0.05 and (lat - ll[..., 1]).abs().max() < 0.05


def test_a_partial_equirect_vr180():
    rng = ((-90.0, 90.0), (-90.0, 90.0))
    equi = coded_equirect(180, 180, *rng)
    lon, lat = decode(equirect_to_perspective(equi, 30.0, 0.0, 60.0, (H, W), *rng, antialias=False))
    assert abs(lon[0, H // 2, W // 2] - 30) < 0.05 and abs(lat[0, H // 2, W // 2]) < 0.05
    assert lonlat_inside(view_lonlat(30.0, 0.0, 60.0, (H, W)), *rng)
    assert not lonlat_inside(view_lonlat(70.0, 0.0, 60.0, (H, W)), *rng)  # its right edge at 100 degrees
    assert lonlat_inside(view_lonlat(150.0, 0.0, 60.0, (H, W)))  # the full sphere covers all


def test_shapes_and_broadcasting():
    equi = torch.rand(1, 3, 32, 64)
    assert equirect_to_perspective(equi, torch.tensor([0.0, 90.0, 180.0]), 0.0, 90.0, (24, 32)).shape == (3, 3, 24, 32)
    assert equirect_to_perspective(torch.rand(2, 1, 32, 64), 0.0, 0.0, 90.0, (24, 32)).shape == (2, 1, 24, 32)
    assert view_lonlat(torch.tensor([0.0, 1.0]), 0.0, 90.0, (5, 7)).shape == (2, 5, 7, 2)
    left, right = stereo_views(equi, equi.flip(-1), [0.0, 45.0], 0.0, 90.0, (24, 32), projection="cylindrical")
    assert left.shape == right.shape == (2, 3, 24, 32)
    assert equirect_to_perspective(equi.double(), 0.0, 0.0, 90.0, (8, 8)).dtype == torch.float64


@pytest.mark.parametrize(
    "call",
    [
        lambda e: equirect_to_perspective(e[0], 0.0, 0.0, 90.0, (8, 8)),  # (C, H, W)
        lambda e: equirect_to_perspective((e * 255).byte(), 0.0, 0.0, 90.0, (8, 8)),  # not float
        lambda e: equirect_to_perspective(e.expand(2, -1, -1, -1), torch.zeros(3), 0.0, 90.0, (8, 8)),  # batches 2 and 3
        lambda e: equirect_to_perspective(e, 0.0, 0.0, 180.0, (8, 8)),  # a pinhole sees less than 180 degrees
        lambda e: equirect_to_perspective(e, 0.0, 0.0, 90.0, (0, 8)),
        lambda e: equirect_to_perspective(e, torch.zeros(2, 2), 0.0, 90.0, (8, 8)),
        lambda e: equirect_to_view(e, 0.0, 0.0, 90.0, (8, 8), projection="fisheye"),
        lambda e: equirect_to_perspective(e, 0.0, 0.0, 90.0, (8, 8), lon_range=(10.0, -10.0)),
        lambda e: equirect_to_perspective(e, 0.0, 0.0, 90.0, (8, 8), lat_range=(-100.0, 90.0)),
        lambda e: stereo_views(e, e[..., :-1], [0.0], 0.0, 90.0, (8, 8)),
        lambda e: mesh_uv(torch.zeros(1, 4, 4, 2), torch.zeros(3, 4, 4)),
    ],
)
def test_bad_arguments_are_refused(call):
    with pytest.raises(ValueError):
        call(torch.rand(1, 3, 16, 32))


def regular_mesh(lon_range, lat_range, n: int = 9) -> torch.Tensor:
    """A mesh that is exactly the equirectangular projection over these ranges (grid points at the edges)."""
    lon = torch.linspace(*lon_range, n)
    lat = torch.linspace(lat_range[1], lat_range[0], n)
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    return torch.stack((lon, lat))


def test_a_regular_mesh_gives_the_equirect_view():
    rng = ((-60.0, 60.0), (-45.0, 45.0))
    equi = coded_equirect(90, 120, *rng)
    want = equirect_to_perspective(equi, torch.tensor([-10.0, 0.0, 10.0]), 0.0, 60.0, (H, W), *rng, antialias=False)
    got, inside = mesh_to_view(equi, regular_mesh(*rng), torch.tensor([-10.0, 0.0, 10.0]), 0.0, 60.0, (H, W), antialias=False)
    assert inside.all()
    assert (got - want).abs().max() < 1e-3


def test_mesh_uv_inverts_a_curved_mesh_and_flags_what_it_does_not_cover():
    # a barrel-shaped mesh (like a VR180 camera's): longitudes spread towards the middle rows
    n = 17
    s = torch.linspace(-1, 1, n)
    t, u = torch.meshgrid(s, s, indexing="ij")
    lon = 60 * u * (1 + 0.1 * (1 - t**2))
    lat = -40 * t * (1 + 0.05 * (1 - u**2)) + 2 * u
    mesh = torch.stack((lon, lat))
    target = torch.stack((torch.linspace(-50, 50, 11)[None].expand(7, -1), torch.linspace(30, -30, 7)[:, None].expand(-1, 11)), dim=-1)[None]
    uv, inside = mesh_uv(target, mesh)
    assert inside.all()
    back = torch.nn.functional.grid_sample(mesh[None], uv * 2 - 1, mode="bilinear", align_corners=True)[0].permute(1, 2, 0)
    assert (back - target[0]).abs().max() < 0.01
    _, outside = mesh_uv(torch.tensor([[[[80.0, 0.0], [0.0, 60.0], [0.0, 0.0]]]]), mesh)
    assert outside.tolist() == [[[False, False, True]]]
