"""Red-cyan anaglyphs: ``(B, 3, H, W) x 2 -> (B, 3, H, W)``, sRGB in ``[0, 1]``."""

from __future__ import annotations

import torch

# Eric Dubois' least-squares red-cyan matrices (rows: output R, G, B; columns: input R, G, B), applied
# in linear light as he derived them.
_DUBOIS_LEFT = ((0.456, 0.500, 0.176), (-0.040, -0.038, -0.016), (-0.015, -0.021, -0.005))
_DUBOIS_RIGHT = ((-0.043, -0.088, -0.002), (0.378, 0.734, -0.018), (-0.072, -0.113, 1.226))
# ITU-R BT.601 luma weights, used by the grey and half-colour anaglyphs.
_LUMA = (0.299, 0.587, 0.114)


def _to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def _mix(x: torch.Tensor, matrix) -> torch.Tensor:
    m = torch.tensor(matrix, dtype=x.dtype, device=x.device)
    return torch.einsum("oc,bchw->bohw", m, x)


def _luma(x: torch.Tensor) -> torch.Tensor:
    return _mix(x, (_LUMA,))


def dubois(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    return _to_srgb(_mix(_to_linear(left), _DUBOIS_LEFT) + _mix(_to_linear(right), _DUBOIS_RIGHT))


def half_color(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    return torch.cat((_luma(left), right[:, 1:3]), dim=1)


def color(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    return torch.cat((left[:, :1], right[:, 1:3]), dim=1)


def gray(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    g = _luma(right)
    return torch.cat((_luma(left), g, g), dim=1)


ANAGLYPH_METHODS = {"dubois": dubois, "half_color": half_color, "color": color, "gray": gray}


def anaglyph(left: torch.Tensor, right: torch.Tensor, method: str = "dubois") -> torch.Tensor:
    """Red (left eye) / cyan (right eye) anaglyph by ``method`` (one of ``ANAGLYPH_METHODS``)."""
    if method not in ANAGLYPH_METHODS:
        raise ValueError(f"unknown anaglyph method '{method}', expected one of {', '.join(ANAGLYPH_METHODS)}")
    if left.shape != right.shape or left.dim() != 4 or left.shape[1] != 3:
        raise ValueError(f"eyes must be two (B, 3, H, W) tensors of one shape, got {tuple(left.shape)} and {tuple(right.shape)}")
    return ANAGLYPH_METHODS[method](left, right).clamp(0, 1)
