"""Frames in, packed stereo frames out: depth -> disparity -> the other eye -> layout, batched on one device."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from s3d.depth.base import DepthBackend
from s3d.io.depth_maps import DepthMapsIn, DepthMapsOut
from s3d.io.image import to_tensor, to_uint8  # noqa: F401 (to_tensor: also s3d.pipeline's, for its users)
from s3d.layout import RGBD, pack, pack_rgbd
from s3d.models.common import ViewModel
from s3d.models.fill import LEARNED, FillNet, repaint
from s3d.stereo import nearness_to_disparity, synthesize_view
from s3d.stereo.comfort import AutoConvergence, shape_nearness
from s3d.stereo.kernel import synthesize_view_uint8
from s3d.stereo.temporal import DepthReuse, TemporalSmoother
from s3d.stereo.warp import DEFAULT_FILL, FILLS

EYES = ("left", "right", "center")
INTERPOLATIONS = ("bicubic", "bilinear")
CONVERT_FILLS = (*FILLS, LEARNED)  # learned: s3d.models.fill repaints the smooth fill's holes and the pixels beside them


@dataclass(frozen=True)
class StereoSettings:
    layout: str = "full_sbs"
    eye: str = "left"  # which eye the input is; "center" renders both eyes half-way each side
    divergence: float = 2.0  # % of width
    convergence: float = 0.5
    anaglyph_method: str = "dubois"
    interpolation: str = "bicubic"  # how the input eye is read at fractional columns: bicubic (sharp) | bilinear (faster on CPU)
    foreground_scale: float = 0.0  # comfort: compress the near range (s3d.stereo.comfort)
    edge_dilation: int = 0  # comfort: grow the near side of depth edges by this many pixels
    vr180_canvas: int = 0  # layout=vr180: each eye's canvas side in pixels (0 = keep the frame's pixel density)
    vr180_screen_degrees: float = 90.0  # layout=vr180: how wide the flat screen looks
    fill: str = DEFAULT_FILL  # disocclusions: CONVERT_FILLS (smooth, stretch, mirror, learned)

    def __post_init__(self):
        if self.eye not in EYES:
            raise ValueError(f"eye must be one of {', '.join(EYES)}, got '{self.eye}'")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got '{self.interpolation}'")
        if self.fill not in CONVERT_FILLS:
            raise ValueError(f"fill must be one of {', '.join(CONVERT_FILLS)}, got '{self.fill}'")


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pad_even(images: torch.Tensor) -> torch.Tensor:
    """Pad bottom/right by one replicated pixel where odd: 4:2:0 video needs even sizes. ``(B,C,H,W)``."""
    h, w = images.shape[-2:]
    if h % 2 == 0 and w % 2 == 0:
        return images
    return F.pad(images, (0, w % 2, 0, h % 2), mode="replicate")


def render_view(image: torch.Tensor, disparity: torch.Tensor, direction: int, mode: str, fill: str, fill_net: FillNet | None = None) -> torch.Tensor:
    """One eye from the other and its disparity: the warp with ``fill`` (``learned``: the smooth fill, then
    ``fill_net`` over its holes). ``image (B, 3, H, W)``, ``disparity (B, 1, H, W)`` px -> ``(B, 3, H, W)``."""
    if fill != LEARNED:
        return synthesize_view(image, disparity, direction=direction, mode=mode, fill=fill)
    return repaint(_need_net(fill_net), synthesize_view(image, disparity, direction=direction, mode=mode, fill="smooth"), disparity, direction)


def render_view_uint8(
    frames: torch.Tensor, disparity: torch.Tensor, direction: int, mode: str, fill: str, fill_net: FillNet | None = None, threads: int | None = None
) -> torch.Tensor:
    """:func:`render_view` on the CPU from uint8 frames, by the numba kernel: ``frames (B, H, W, 3) uint8``,
    ``disparity (B, 1, H, W)`` px -> ``(B, H, W, 3) uint8``. What conversion, ``make bench`` and evaluate.py run."""
    if fill != LEARNED:
        return synthesize_view_uint8(frames, disparity, direction, mode, threads, fill)
    eye = synthesize_view_uint8(frames, disparity, direction, mode, threads, "smooth")
    return repaint(_need_net(fill_net), eye.permute(0, 3, 1, 2), disparity, direction).permute(0, 2, 3, 1)


def _need_net(fill_net: FillNet | None) -> FillNet:
    if fill_net is None:
        raise ValueError(f"fill={LEARNED} needs the fill network (weights/s3d_fill.safetensors)")
    return fill_net


def make_eyes(image: torch.Tensor, nearness: torch.Tensor, s: StereoSettings, fill_net: FillNet | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``image (B, 3, H, W)``, ``nearness (B, 1, H, W)`` -> ``(left, right)``, each ``(B, 3, H, W)``; ``fill_net``
    for ``fill=learned``."""
    d = nearness_to_disparity(shape_nearness(nearness, s.foreground_scale, s.edge_dilation), image.shape[-1], s.divergence, s.convergence)
    view = lambda disparity, direction: render_view(image, disparity, direction, s.interpolation, s.fill, fill_net)  # noqa: E731
    if s.eye == "left":
        return image, view(d, 1)
    if s.eye == "right":
        return view(d, -1), image
    return view(d / 2, -1), view(d / 2, 1)


def uint8_shortcut(s: StereoSettings, h: int, w: int, even: bool) -> bool:
    """Whether the packed frame is the input eye beside (or over) one rendered eye at full size, unpadded: then
    the input eye is copied as it is and only the other eye is rendered, straight to uint8."""
    return s.layout in ("full_sbs", "full_ou", "full_cross") and s.eye != "center" and not (even and (h % 2 or w % 2))


def other_eye_uint8(
    frames: torch.Tensor, image: torch.Tensor, nearness: torch.Tensor, s: StereoSettings, threads: int | None = None, fill_net: FillNet | None = None
) -> torch.Tensor:
    """The eye that is not the input (``s.eye`` left or right) ``-> (B, H, W, 3) uint8`` on the CPU.

    ``frames (B, H, W, 3) uint8`` on the CPU, ``image`` the same as ``(B, 3, H, W)`` float on the pipeline's
    device, ``nearness (B, 1, H, W)``. On the CPU the numba kernel renders it from the uint8 frames (the same
    bytes as :func:`make_eyes` + :func:`to_uint8`, in a fraction of the time); on CUDA torch does, on the GPU.
    """
    if s.eye not in ("left", "right"):
        raise ValueError(f"the other eye of eye={s.eye}: needs eye=left or eye=right")
    if image.device.type == "cpu":
        d = nearness_to_disparity(shape_nearness(nearness, s.foreground_scale, s.edge_dilation), image.shape[-1], s.divergence, s.convergence)
        return render_view_uint8(frames, d, 1 if s.eye == "left" else -1, s.interpolation, s.fill, fill_net, threads)
    left, right = make_eyes(image, nearness, s, fill_net)
    return to_uint8(right if s.eye == "left" else left)


def join_eyes(frames: torch.Tensor, other: torch.Tensor, s: StereoSettings) -> torch.Tensor:
    """The input eye and the rendered one, both ``(B, H, W, 3) uint8``, packed full SBS, full OU or full cross."""
    left, right = (frames, other) if s.eye == "left" else (other, frames)
    if s.layout == "full_cross":
        return torch.cat((right, left), dim=2)
    return torch.cat((left, right), dim=2 if s.layout == "full_sbs" else 1)


class StereoPipeline:
    """Convert batches of mono frames to packed stereo frames."""

    def __init__(
        self,
        depth: DepthBackend | None,
        settings: StereoSettings,
        device: torch.device,
        temporal: TemporalSmoother | None = None,
        reuse: DepthReuse | None = None,
        maps_in: DepthMapsIn | None = None,
        maps_out: DepthMapsOut | None = None,
        convergence: AutoConvergence | None = None,
        fill_net: FillNet | None = None,
    ):
        self.depth, self.settings, self.device, self.temporal, self.reuse = depth, settings, device, temporal, reuse
        self.fill_net = fill_net  # fill=learned: s3d.models.fill.FillNet on the pipeline's device
        self.maps_in, self.maps_out = maps_in, maps_out  # depth_in= / depth_out= (s3d.io.depth_maps)
        self.convergence = convergence  # comfort.auto_convergence: the screen plane follows the subject

    def nearness(self, image: torch.Tensor, ids: list[int] | None = None) -> torch.Tensor:
        """Depth of consecutive frames ``(B, 3, H, W) -> (B, 1, H, W)``: the user's maps for frames ``ids``
        (``maps_in``), or the network, skipped on frames that barely changed (``reuse``) and smoothed over time
        (``temporal``), if configured."""
        if self.maps_in is not None:
            if ids is None:
                raise ValueError("depth maps in need the frames' indices")
            return self.maps_in.read(ids, tuple(image.shape[-2:])).to(image.device)
        near = self.depth(image) if self.reuse is None else self.reuse(self.depth, image)
        return self.temporal(near, image) if self.temporal is not None else near

    def _nearness_out(self, image: torch.Tensor, ids: list[int] | None) -> torch.Tensor:
        near = self.nearness(image, ids)
        if self.maps_out is not None and ids is not None:
            self.maps_out.write(ids, near)  # exactly what drives the warp
        return near

    def batch_size(self, requested: int) -> int:
        """Frames per batch: ``requested``, rounded up to a multiple of the depth's key-frame interval so that
        key frames stay evenly spaced (each batch ends on one)."""
        interval = self.reuse.interval if self.reuse is not None else 1
        return -(-requested // interval) * interval

    def reset(self) -> None:
        """Between videos (or segments): nothing of the last one's depth carries over."""
        for state in (self.temporal, self.reuse, self.convergence):
            if state is not None:
                state.reset()

    @torch.inference_mode()
    def prime(self, frames: torch.Tensor) -> None:
        """Feed frames that come before the ones to convert through depth, smoothing and the moving screen plane
        only, so a segment starts where the one before it left off."""
        if (self.temporal is not None or self.convergence is not None) and self.maps_in is None:
            image = to_tensor(frames, self.device)
            near = self.nearness(image)
            if self.convergence is not None:
                s = self.settings
                self.convergence(shape_nearness(near, s.foreground_scale, s.edge_dilation), image)

    @torch.inference_mode()
    def eyes(self, frames: torch.Tensor, ids: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, H, W, 3) uint8 -> (left, right)`` float ``(B, 3, H, W)``; ``ids``: the frames' indices (depth maps in/out)."""
        image = to_tensor(frames, self.device)
        return make_eyes(image, self._nearness_out(image, ids), self.settings, self.fill_net)

    @torch.inference_mode()
    def eyes_and_frame(self, frames: torch.Tensor, ids: list[int] | None = None, even: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`eyes` and :meth:`__call__` from one depth estimate: ``(left, right, packed (B, H', W', 3) uint8)``."""
        image = to_tensor(frames, self.device)
        nearness = self._nearness_out(image, ids)
        return *make_eyes(image, nearness, self.settings, self.fill_net), self.render(frames, image, nearness, even)

    @torch.inference_mode()
    def pack(self, left: torch.Tensor, right: torch.Tensor, even: bool) -> torch.Tensor:
        s = self.settings
        packed = pack(left, right, s.layout, anaglyph_method=s.anaglyph_method, canvas=s.vr180_canvas, screen_degrees=s.vr180_screen_degrees)
        return to_uint8(pad_even(packed) if even else packed)

    def __call__(self, frames: torch.Tensor, even: bool = True, ids: list[int] | None = None) -> torch.Tensor:
        """``(B, H, W, 3) uint8 -> (B, H', W', 3) uint8`` packed in the configured layout; ``ids``: the frames'
        indices in the video (depth maps in/out)."""
        with torch.inference_mode():
            image = to_tensor(frames, self.device)
            return self.render(frames, image, self._nearness_out(image, ids), even)

    @torch.inference_mode()
    def render(self, frames: torch.Tensor, image: torch.Tensor, nearness: torch.Tensor, even: bool = True) -> torch.Tensor:
        """Everything after depth: ``frames (B, H, W, 3) uint8``, the same as ``image (B, 3, H, W)`` on the
        device, and their (smoothed) ``nearness (B, 1, H, W)`` -> packed ``(B, H', W', 3) uint8``. The one
        synthesis path of conversion and of ``make bench``."""
        s = self.settings
        if self.convergence is not None:  # each frame its own screen plane
            planes = self.convergence(shape_nearness(nearness, s.foreground_scale, s.edge_dilation), image)
            return torch.cat(
                [self._render(frames[i : i + 1], image[i : i + 1], nearness[i : i + 1], replace(s, convergence=c), even) for i, c in enumerate(planes)]
            )
        return self._render(frames, image, nearness, s, even)

    def _render(self, frames: torch.Tensor, image: torch.Tensor, nearness: torch.Tensor, s: StereoSettings, even: bool) -> torch.Tensor:
        if s.layout in RGBD:  # the player renders the views: the input eye and the depth that would drive the warp
            packed = pack_rgbd(image, shape_nearness(nearness, s.foreground_scale, s.edge_dilation), s.layout)
            return to_uint8(pad_even(packed) if even else packed)
        if uint8_shortcut(s, *frames.shape[1:3], even):
            # The input eye is already uint8 on the CPU: only the other eye is rendered, straight to uint8.
            # torch's thread count is the one convert's `threads` (and each worker's share) sets: the kernel follows it
            return join_eyes(frames, other_eye_uint8(frames, image, nearness, s, torch.get_num_threads(), self.fill_net), s)
        return self.pack(*make_eyes(image, nearness, s, self.fill_net), even=even)


class ModelPipeline(StereoPipeline):
    """Like :class:`StereoPipeline`, but a trained view-synthesis model renders the other eye.

    Models are trained left -> right; for a right-eye input the frame is mirrored, which turns it into
    the left eye of the mirrored scene, and the result is mirrored back.
    """

    def __init__(
        self,
        model: ViewModel,
        depth: DepthBackend | None,
        settings: StereoSettings,
        device: torch.device,
        temporal: TemporalSmoother | None = None,
        reuse: DepthReuse | None = None,
    ):
        if settings.eye == "center":
            raise ValueError("a trained model renders one eye from the other: use eye=left or eye=right")
        super().__init__(depth, settings, device, temporal, reuse)
        self.model = model

    def _other_eye(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image, self.nearness(image) if self.model.use_depth else None).pred

    @torch.inference_mode()
    def eyes(self, frames: torch.Tensor, ids: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        image = to_tensor(frames, self.device)
        if self.settings.eye == "right":
            return self._other_eye(image.flip(-1)).flip(-1), image
        return image, self._other_eye(image)

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, even: bool = True, ids: list[int] | None = None) -> torch.Tensor:
        s = self.settings
        left, right = self.eyes(frames)  # the model renders the other eye, in float on the device
        if uint8_shortcut(s, *frames.shape[1:3], even):
            return join_eyes(frames, to_uint8(right if s.eye == "left" else left), s)
        return self.pack(left, right, even=even)
