"""Flat views cut from equirectangular (360 / VR180) images: pure tensor functions, kornia style.

Conventions (degrees throughout):

* An equirectangular image ``(B, C, H, W)`` covers longitudes ``lon_range`` from its left edge to its
  right edge and latitudes ``lat_range`` from its bottom edge to its top edge (default the full sphere,
  ``(-180, 180)`` x ``(-90, 90)``; longitude 0 is the middle of the image). The ranges are the *edges*
  of the image, so pixel ``(v, u)`` has its centre at ``lon = lon0 + (u + 0.5) * span / W`` -- the
  ``align_corners=False`` convention of :func:`torch.nn.functional.grid_sample`, which samples it.
* A view ``(B, C, h, w)`` looks at ``yaw`` (positive: to the right, towards larger longitude) and
  ``pitch`` (positive: up); x runs right, y down, the principal point is the image centre, pixels are
  square and pixel ``(i, j)`` has its centre at ``x = j + 0.5 - w/2``, ``y = i + 0.5 - h/2``. ``fov`` is
  the horizontal field of view from the left edge of the image to its right edge.
* Perspective (pinhole) views: ``x = f tan(theta)``, ``f = (w/2) / tan(fov/2)``.
  Cylindrical views: ``x = f theta`` with ``f = (w/2) / (fov/2 in radians)`` and ``y = -f tan(lat)``
  (central cylinder): straight verticals, a straight horizon, and, at ``pitch = 0``, the row of a
  point depends on its latitude only.
* A full 360 degree image wraps around in longitude (the seam at +-180 is interpolated across);
  outside a partial image (VR180, cropped panoramas) and beyond the poles the edge pixels repeat.
* Mesh projections (Spherical Video V2 ``mshp``, as VR180 cameras write them with each eye's
  calibration): a grid of the directions seen by regular image points; :func:`mesh_uv` inverts it.

Stereo: omnidirectional stereo (ODS) 360 images have the same latitude for a point in both eyes, so
cylindrical views at ``pitch = 0`` are exactly rectified at any yaw; perspective views of them get a
vertical parallax that grows towards the corners (about ``y x / (f^2 + x^2)`` times the disparity).
VR180 eyes come from two parallel cameras: perspective views at ``yaw = 0`` are exactly rectified (at
any pitch), at other yaws the baseline has a component along the view and the epipolar lines tilt.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PROJECTIONS = ("perspective", "cylindrical")


def _batch_angles(value: float | torch.Tensor, device, dtype) -> torch.Tensor:
    """A float or ``(B,)`` tensor of degrees -> ``(B,)`` radians."""
    t = torch.as_tensor(value, device=device, dtype=dtype)
    if t.dim() > 1:
        raise ValueError(f"angles must be a float or a (B,) tensor, got shape {tuple(t.shape)}")
    return torch.deg2rad(t.reshape(-1))


def _check_view(fov_deg: float, out_hw: tuple[int, int], projection: str) -> None:
    if projection not in PROJECTIONS:
        raise ValueError(f"unknown projection '{projection}', expected one of {', '.join(PROJECTIONS)}")
    if len(out_hw) != 2 or min(out_hw) < 1:
        raise ValueError(f"out_hw must be (h, w) with h, w >= 1, got {tuple(out_hw)}")
    limit = 180 if projection == "perspective" else 360
    if not 0 < fov_deg < limit:
        raise ValueError(f"fov_deg must be in (0, {limit}) for a {projection} view, got {fov_deg}")


def focal_px(fov_deg: float, width: int, projection: str = "perspective") -> float:
    """Focal length in pixels of a view ``width`` px wide with horizontal field of view ``fov_deg``."""
    half = math.radians(fov_deg) / 2
    return (width / 2) / (math.tan(half) if projection == "perspective" else half)


def view_lonlat(
    yaw_deg: float | torch.Tensor,
    pitch_deg: float | torch.Tensor,
    fov_deg: float,
    out_hw: tuple[int, int],
    projection: str = "perspective",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Longitude and latitude seen by each pixel centre of a view.

    ``yaw_deg, pitch_deg``: floats or ``(B,)`` tensors (broadcast against each other) -> ``(B, h, w, 2)``
    degrees, ``[..., 0]`` longitude in ``[-180, 180)``, ``[..., 1]`` latitude in ``[-90, 90]``.
    """
    _check_view(fov_deg, out_hw, projection)
    h, w = out_hw
    yaw, pitch = torch.broadcast_tensors(_batch_angles(yaw_deg, device, dtype), _batch_angles(pitch_deg, device, dtype))
    f = focal_px(fov_deg, w, projection)
    x = torch.arange(w, device=device, dtype=dtype) + 0.5 - w / 2
    y = torch.arange(h, device=device, dtype=dtype) + 0.5 - h / 2
    y, x = torch.meshgrid(y, x, indexing="ij")
    if projection == "perspective":  # camera frame: X right, Y up, Z forward
        rx, ry, rz = x, -y, torch.full_like(x, f)
    else:
        theta = x / f
        rx, ry, rz = torch.sin(theta), -y / f, torch.cos(theta)
    cp, sp = torch.cos(pitch)[:, None, None], torch.sin(pitch)[:, None, None]
    cy, sy = torch.cos(yaw)[:, None, None], torch.sin(yaw)[:, None, None]
    # pitch: turn about X (up for pitch > 0), then yaw: turn about the vertical (right for yaw > 0)
    ry, rz = ry * cp + rz * sp, -ry * sp + rz * cp
    rx, rz = rx * cy + rz * sy, -rx * sy + rz * cy
    lon = torch.atan2(rx, rz)
    lat = torch.atan2(ry, torch.sqrt(rx * rx + rz * rz))
    lon = torch.remainder(torch.rad2deg(lon) + 180, 360) - 180
    return torch.stack((lon, torch.rad2deg(lat)), dim=-1)


def _ranges(lon_range: tuple[float, float], lat_range: tuple[float, float]) -> tuple[float, float, float, float]:
    lon0, lon1 = map(float, lon_range)
    lat0, lat1 = map(float, lat_range)
    if not (lon0 < lon1 and lon1 - lon0 <= 360):
        raise ValueError(f"lon_range must be increasing and span at most 360 degrees, got {lon_range}")
    if not (-90 <= lat0 < lat1 <= 90):
        raise ValueError(f"lat_range must be increasing within [-90, 90], got {lat_range}")
    return lon0, lon1, lat0, lat1


def lonlat_inside(lonlat: torch.Tensor, lon_range: tuple[float, float] = (-180, 180), lat_range: tuple[float, float] = (-90, 90)) -> bool:
    """True if every ``(..., 2)`` longitude/latitude lies inside the area an equirectangular image covers."""
    lon0, lon1, lat0, lat1 = _ranges(lon_range, lat_range)
    lat_ok = bool(((lonlat[..., 1] >= lat0) & (lonlat[..., 1] <= lat1)).all())
    if lon1 - lon0 == 360:
        return lat_ok
    lon = torch.remainder(lonlat[..., 0] - lon0, 360) + lon0
    return lat_ok and bool((lon <= lon1).all())


def _check_batches(image: torch.Tensor, grid: torch.Tensor, what: str) -> int:
    b = max(image.shape[0], grid.shape[0])
    if image.shape[0] not in (1, b) or grid.shape[0] not in (1, b):
        raise ValueError(f"batch sizes {image.shape[0]} (image) and {grid.shape[0]} ({what}) do not broadcast")
    return b


def _sample(equi: torch.Tensor, lonlat: torch.Tensor, lon0: float, lon1: float, lat0: float, lat1: float, wrap0: float, mode: str) -> torch.Tensor:
    """grid_sample an image whose edges lie at ``lon0 .. lon1`` (a pre-padded panorama may span more
    than 360 degrees) and ``lat0 .. lat1``, after wrapping the longitudes into ``[wrap0, wrap0 + 360)``."""
    b = _check_batches(equi, lonlat, "lonlat")
    lonlat = lonlat.to(equi.dtype)
    lon = torch.remainder(lonlat[..., 0] - wrap0, 360) + wrap0
    gx = 2 * (lon - lon0) / (lon1 - lon0) - 1
    gy = 2 * (lat1 - lonlat[..., 1]) / (lat1 - lat0) - 1
    grid = torch.stack((gx, gy), dim=-1).expand(b, -1, -1, -1)
    return F.grid_sample(equi.expand(b, -1, -1, -1), grid, mode=mode, padding_mode="border", align_corners=False)


def _wrap_pad(equi: torch.Tensor, lon0: float, lon1: float, cols: int) -> tuple[torch.Tensor, float, float]:
    """A full panorama with ``cols`` columns from the other side on each edge, and its new edges."""
    w = equi.shape[-1]
    cols = min(cols, w)
    step = (lon1 - lon0) / w
    return torch.cat((equi[..., w - cols :], equi, equi[..., :cols]), dim=-1), lon0 - cols * step, lon1 + cols * step


def _check_equi(equi: torch.Tensor) -> None:
    if equi.dim() != 4:
        raise ValueError(f"equi must be (B, C, H, W), got shape {tuple(equi.shape)}")
    if not equi.is_floating_point():
        raise ValueError(f"equi must be a floating point tensor, got {equi.dtype}")


def sample_equirect(
    equi: torch.Tensor,
    lonlat: torch.Tensor,
    lon_range: tuple[float, float] = (-180, 180),
    lat_range: tuple[float, float] = (-90, 90),
    mode: str = "bilinear",
) -> torch.Tensor:
    """Read an equirectangular image at given longitudes/latitudes.

    ``equi (B, C, H, W)``, ``lonlat (B, h, w, 2)`` or ``(1, h, w, 2)`` degrees (either batch may be 1
    and is broadcast) -> ``(B', C, h, w)``, same dtype as ``equi`` (floating point). ``mode``: as
    :func:`torch.nn.functional.grid_sample` (``bilinear``, ``nearest``, ``bicubic``).
    """
    _check_equi(equi)
    if lonlat.dim() != 4 or lonlat.shape[-1] != 2:
        raise ValueError(f"lonlat must be (B, h, w, 2), got shape {tuple(lonlat.shape)}")
    lon0, lon1, lat0, lat1 = _ranges(lon_range, lat_range)
    if lon1 - lon0 == 360:  # interpolate across the seam: two columns from the other side on each edge
        padded, e0, e1 = _wrap_pad(equi, lon0, lon1, 2)
        return _sample(padded, lonlat, e0, e1, lat0, lat1, lon0, mode)
    return _sample(equi, lonlat, lon0, lon1, lat0, lat1, (lon0 + lon1) / 2 - 180, mode)


def _shrunk_size(h: int, w: int, px_per_deg: float, lon_span: float, lat_span: float) -> tuple[int, int]:
    return min(h, max(2, round(px_per_deg * lat_span))), min(w, max(2, round(px_per_deg * lon_span)))


def prefilter_equirect(
    equi: torch.Tensor, px_per_deg: float, lon_range: tuple[float, float] = (-180, 180), lat_range: tuple[float, float] = (-90, 90)
) -> torch.Tensor:
    """Shrink (antialiased) an equirectangular image whose resolution exceeds ``px_per_deg``, per axis;
    never enlarges. ``(B, C, H, W) -> (B, C, H', W')`` covering the same ranges. (A full panorama is
    filtered as if cut at its seam; :func:`equirect_to_view` filters across it.)"""
    lon0, lon1, lat0, lat1 = _ranges(lon_range, lat_range)
    H, W = equi.shape[-2:]
    size = _shrunk_size(H, W, px_per_deg, lon1 - lon0, lat1 - lat0)
    if size == (H, W):
        return equi
    return F.interpolate(equi, size=size, mode="bilinear", align_corners=False, antialias=True)


def equirect_to_view(
    equi: torch.Tensor,
    yaw_deg: float | torch.Tensor,
    pitch_deg: float | torch.Tensor,
    fov_deg: float,
    out_hw: tuple[int, int],
    projection: str = "perspective",
    lon_range: tuple[float, float] = (-180, 180),
    lat_range: tuple[float, float] = (-90, 90),
    mode: str = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Cut a perspective or cylindrical view from an equirectangular image.

    ``equi (B, C, H, W)``; ``yaw_deg, pitch_deg`` floats or ``(B',)`` tensors -> ``(max(B, B'), C, h, w)``
    with ``out_hw = (h, w)``. With ``antialias`` the image is first shrunk to the view's resolution at its
    centre (``f`` px per radian; a full panorama filtered across its seam), so a view much smaller than
    the panorama does not alias.
    """
    _check_equi(equi)
    lonlat = view_lonlat(yaw_deg, pitch_deg, fov_deg, out_hw, projection, device=equi.device, dtype=equi.dtype)
    lon0, lon1, lat0, lat1 = _ranges(lon_range, lat_range)
    H, W = equi.shape[-2:]
    size = _shrunk_size(H, W, focal_px(fov_deg, out_hw[1], projection) * math.pi / 180, lon1 - lon0, lat1 - lat0) if antialias else (H, W)
    if lon1 - lon0 == 360:
        # pad across the seam by four output pixels' worth (and two more for the interpolation), then shrink
        padded, e0, e1 = _wrap_pad(equi, lon0, lon1, 2 + math.ceil(4 * W / size[1]))
        if size != (H, W):
            padded = F.interpolate(padded, size=(size[0], round(padded.shape[-1] * size[1] / W)), mode="bilinear", align_corners=False, antialias=True)
        return _sample(padded, lonlat, e0, e1, lat0, lat1, lon0, mode)
    if size != (H, W):
        equi = F.interpolate(equi, size=size, mode="bilinear", align_corners=False, antialias=True)
    return _sample(equi, lonlat, lon0, lon1, lat0, lat1, (lon0 + lon1) / 2 - 180, mode)


def equirect_to_perspective(
    equi: torch.Tensor,
    yaw_deg: float | torch.Tensor,
    pitch_deg: float | torch.Tensor,
    fov_deg: float,
    out_hw: tuple[int, int],
    lon_range: tuple[float, float] = (-180, 180),
    lat_range: tuple[float, float] = (-90, 90),
    mode: str = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Pinhole view. ``equi (B, C, H, W) -> (B, C, h, w)``; see :func:`equirect_to_view`."""
    return equirect_to_view(equi, yaw_deg, pitch_deg, fov_deg, out_hw, "perspective", lon_range, lat_range, mode, antialias)


def equirect_to_cylindrical(
    equi: torch.Tensor,
    yaw_deg: float | torch.Tensor,
    pitch_deg: float | torch.Tensor,
    fov_deg: float,
    out_hw: tuple[int, int],
    lon_range: tuple[float, float] = (-180, 180),
    lat_range: tuple[float, float] = (-90, 90),
    mode: str = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Central-cylinder view (rectified for ODS stereo at pitch 0). ``(B, C, H, W) -> (B, C, h, w)``."""
    return equirect_to_view(equi, yaw_deg, pitch_deg, fov_deg, out_hw, "cylindrical", lon_range, lat_range, mode, antialias)


def mesh_uv(lonlat: torch.Tensor, mesh_lonlat: torch.Tensor, iters: int = 8, tol_deg: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert a mesh projection: where in the image each longitude/latitude lies.

    ``mesh_lonlat (2, gh, gw)``: the longitude and latitude (degrees) seen by a regular grid of image
    points, row 0 at the top edge and column 0 at the left edge of the image, the last row and column at
    the bottom and right edges (a Spherical Video V2 ``mshp`` mesh, or any smooth projection sampled on a
    grid); between grid points the projection is taken as bilinear. ``lonlat (B, h, w, 2)`` ->
    ``uv (B, h, w, 2)`` in ``[0, 1]`` (``u`` from the left edge, ``v`` from the top edge, the
    ``align_corners=False`` image edges) and ``inside (B, h, w)`` bool: the mesh covers that direction.
    Newton's method from the best affine fit.
    """
    if mesh_lonlat.dim() != 3 or mesh_lonlat.shape[0] != 2 or min(mesh_lonlat.shape[1:]) < 2:
        raise ValueError(f"mesh_lonlat must be (2, gh, gw) with gh, gw >= 2, got shape {tuple(mesh_lonlat.shape)}")
    if lonlat.dim() != 4 or lonlat.shape[-1] != 2:
        raise ValueError(f"lonlat must be (B, h, w, 2), got shape {tuple(lonlat.shape)}")
    mesh = mesh_lonlat.to(lonlat)
    # unwrap longitudes to the mesh's middle so a mesh across the +-180 seam stays continuous
    centre = mesh[0, mesh.shape[1] // 2, mesh.shape[2] // 2]
    mesh = torch.stack((torch.remainder(mesh[0] - centre + 180, 360) - 180 + centre, mesh[1]))
    target = torch.stack((torch.remainder(lonlat[..., 0] - centre + 180, 360) - 180 + centre, lonlat[..., 1]), dim=-1)

    def forward(uv: torch.Tensor) -> torch.Tensor:  # (B, h, w, 2) uv -> lon/lat, bilinear between grid points
        return F.grid_sample(mesh[None].expand(uv.shape[0], -1, -1, -1), uv * 2 - 1, mode="bilinear", padding_mode="border", align_corners=True).permute(
            0, 2, 3, 1
        )

    gh, gw = mesh.shape[1:]
    v, u = torch.meshgrid(
        torch.linspace(0, 1, gh, dtype=mesh.dtype, device=mesh.device), torch.linspace(0, 1, gw, dtype=mesh.dtype, device=mesh.device), indexing="ij"
    )
    a = torch.stack((mesh[0].flatten(), mesh[1].flatten(), torch.ones_like(u).flatten()), dim=1)
    coef = torch.linalg.lstsq(a, torch.stack((u.flatten(), v.flatten()), dim=1)).solution  # (3, 2): lon, lat, 1 -> u, v
    uv = torch.cat((target, torch.ones_like(target[..., :1])), dim=-1) @ coef
    eps = 1e-3
    for _ in range(iters):
        err = forward(uv) - target
        du = (
            forward(uv + torch.tensor([eps, 0], dtype=uv.dtype, device=uv.device)) - forward(uv - torch.tensor([eps, 0], dtype=uv.dtype, device=uv.device))
        ) / (2 * eps)
        dv = (
            forward(uv + torch.tensor([0, eps], dtype=uv.dtype, device=uv.device)) - forward(uv - torch.tensor([0, eps], dtype=uv.dtype, device=uv.device))
        ) / (2 * eps)
        det = du[..., 0] * dv[..., 1] - dv[..., 0] * du[..., 1]
        det = torch.where(det.abs() < 1e-9, torch.full_like(det, 1e-9), det)
        step_u = (dv[..., 1] * err[..., 0] - dv[..., 0] * err[..., 1]) / det
        step_v = (-du[..., 1] * err[..., 0] + du[..., 0] * err[..., 1]) / det
        uv = (uv - torch.stack((step_u, step_v), dim=-1)).clamp(-0.5, 1.5)
    inside = ((forward(uv) - target).abs().amax(dim=-1) < tol_deg) & (uv >= 0).all(dim=-1) & (uv <= 1).all(dim=-1)
    return uv, inside


def sample_texture(image: torch.Tensor, uv: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Read ``image (B, C, H, W)`` at ``uv (B, h, w, 2)`` (``[0, 1]`` from the left and top edges; either
    batch may be 1) -> ``(B', C, h, w)``; outside the image the edge pixels repeat."""
    if image.dim() != 4 or uv.dim() != 4 or uv.shape[-1] != 2:
        raise ValueError(f"image must be (B, C, H, W) and uv (B, h, w, 2), got {tuple(image.shape)} and {tuple(uv.shape)}")
    b = _check_batches(image, uv, "uv")
    grid = (uv.to(image.dtype) * 2 - 1).expand(b, -1, -1, -1)
    return F.grid_sample(image.expand(b, -1, -1, -1), grid, mode=mode, padding_mode="border", align_corners=False)


def mesh_to_view(
    image: torch.Tensor,
    mesh_lonlat: torch.Tensor,
    yaw_deg: float | torch.Tensor,
    pitch_deg: float | torch.Tensor,
    fov_deg: float,
    out_hw: tuple[int, int],
    projection: str = "perspective",
    mode: str = "bilinear",
    antialias: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A view of an image in a mesh projection (see :func:`mesh_uv`).

    ``image (B, C, H, W)`` -> ``(view (B', C, h, w), inside (B', h, w) bool)``; ``inside`` is False
    where the view looks past what the mesh covers (there the edge pixels repeat).
    """
    lonlat = view_lonlat(
        yaw_deg, pitch_deg, fov_deg, out_hw, projection, device=image.device, dtype=image.dtype if image.is_floating_point() else torch.float32
    )
    uv, inside = mesh_uv(lonlat, mesh_lonlat)
    if antialias:
        # the image's resolution along the middle row and column of the mesh, in px per degree
        mid_r, mid_c = mesh_lonlat[:, mesh_lonlat.shape[1] // 2], mesh_lonlat[:, :, mesh_lonlat.shape[2] // 2]
        lon_span = float((mid_r[0, -1] - mid_r[0, 0]).abs()) or 1.0
        lat_span = float((mid_c[1, 0] - mid_c[1, -1]).abs()) or 1.0
        ppd = focal_px(fov_deg, out_hw[1], projection) * math.pi / 180
        h = min(image.shape[-2], max(2, round(ppd * lat_span)))
        w = min(image.shape[-1], max(2, round(ppd * lon_span)))
        if (h, w) != tuple(image.shape[-2:]):
            image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return sample_texture(image, uv, mode), inside


def stereo_views(
    left: torch.Tensor,
    right: torch.Tensor,
    yaws_deg: list[float],
    pitch_deg: float,
    fov_deg: float,
    out_hw: tuple[int, int],
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same views cut from both eyes of a stereo panorama (horizontal parallax needs the same yaw in
    both). ``left, right (1, C, H, W)`` -> ``(N, C, h, w)`` each for ``N = len(yaws_deg)``; ``kwargs`` as
    :func:`equirect_to_view`."""
    if left.shape != right.shape:
        raise ValueError(f"eyes differ in shape: {tuple(left.shape)} and {tuple(right.shape)}")
    if left.dim() != 4 or left.shape[0] != 1:
        raise ValueError(f"eyes must be (1, C, H, W), got shape {tuple(left.shape)}")
    yaws = torch.as_tensor(list(yaws_deg), dtype=torch.float32)
    return tuple(equirect_to_view(eye, yaws, pitch_deg, fov_deg, out_hw, **kwargs) for eye in (left, right))  # type: ignore[return-value]
