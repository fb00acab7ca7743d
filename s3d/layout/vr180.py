"""VR180: each eye's frame as a flat screen on a 180-degree equirectangular canvas, the two canvases side by side.

A VR180 player wraps each eye's canvas on a half sphere around the viewer; a flat picture placed on it by
a plain resize would bend. Here each canvas pixel is a direction (longitude, latitude in ``[-90, 90]``
degrees, centre of the pixel), and the pixel shows what a flat screen straight ahead, ``screen_degrees``
wide, shows in that direction (a pinhole projection onto the plane ``z = 1``); outside the screen, black.
Both eyes use the same screen: their own disparity is already in the pictures.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def vr180_canvas_size(height: int, width: int, canvas: int, screen_degrees: float) -> int:
    """Side of each eye's square canvas: ``canvas`` if set, else the size at which the screen's centre keeps
    the frame's own pixel density (``width * 90 / tan-half-angle``, even)."""
    if canvas:
        return canvas + canvas % 2
    half = math.tan(math.radians(screen_degrees) / 2)
    # at the centre, one canvas pixel spans 180 / n degrees; one frame pixel spans about 2 * half / width radians
    n = math.ceil(math.pi * width / (2 * half))
    return n + n % 2


def screen_grid(canvas: int, height: int, width: int, screen_degrees: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """Where each canvas pixel reads the frame: ``(1, canvas, canvas, 2)`` in ``grid_sample``'s ``[-1, 1]``
    (``align_corners=False``), beyond ``[-1, 1]`` outside the screen."""
    if not 0 < screen_degrees < 180:
        raise ValueError(f"screen_degrees must be between 0 and 180, got {screen_degrees}")
    angles = (torch.arange(canvas, device=device, dtype=torch.float64) + 0.5) / canvas * math.pi - math.pi / 2
    lat, lon = torch.meshgrid(angles, angles, indexing="ij")  # rows: latitude from the top (-90) down
    x, y, z = torch.cos(lat) * torch.sin(lon), torch.sin(lat), torch.cos(lat) * torch.cos(lon)
    half_w = math.tan(math.radians(screen_degrees) / 2)
    half_h = half_w * height / width
    safe_z = z.clamp(min=1e-9)
    u, v = x / safe_z / half_w, y / safe_z / half_h
    behind = z <= 1e-9
    u, v = u.masked_fill(behind, 2.0), v.masked_fill(behind, 2.0)
    return torch.stack((u, v), dim=-1)[None].to(dtype)


def place_on_canvas(eye: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``eye (B, 3, h, w)``, ``grid (1, n, n, 2)`` from :func:`screen_grid` ``-> (B, 3, n, n)``, black off-screen."""
    if eye.dim() != 4 or grid.dim() != 4 or grid.shape[-1] != 2:
        raise ValueError(f"expected eye (B, C, h, w) and grid (1, n, n, 2), got {tuple(eye.shape)} and {tuple(grid.shape)}")
    g = grid.to(eye.dtype).expand(eye.shape[0], -1, -1, -1)
    return F.grid_sample(eye, g, mode="bilinear", padding_mode="zeros", align_corners=False)


def pack_vr180(left: torch.Tensor, right: torch.Tensor, canvas: int = 0, screen_degrees: float = 90.0) -> torch.Tensor:
    """Two eyes ``(B, 3, h, w)`` ``-> (B, 3, n, 2n)``: the left eye's canvas, then the right eye's."""
    if left.shape != right.shape or left.dim() != 4:
        raise ValueError(f"eyes must be two (B, C, H, W) tensors of one shape, got {tuple(left.shape)} and {tuple(right.shape)}")
    h, w = left.shape[-2:]
    n = vr180_canvas_size(h, w, canvas, screen_degrees)
    grid = screen_grid(n, h, w, screen_degrees, left.device, left.dtype)
    return torch.cat((place_on_canvas(left, grid), place_on_canvas(right, grid)), dim=-1)
