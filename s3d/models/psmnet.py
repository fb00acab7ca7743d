"""PSMNet (Chang & Chen, CVPR 2018, "Pyramid Stereo Matching Network"): a frozen stereo teacher.

The stacked-hourglass model with a maximum disparity of 192 px, in the module layout of the published
checkpoint (``pretrained_model_KITTI2015.tar``: Scene Flow, then KITTI 2015), so its tensor names load
as they are once the ``module.`` prefix of ``nn.DataParallel`` is stripped (``s3d.models.fetch_psmnet``).

The network, in four stages:

1. **Features** (:class:`FeatureExtraction`): a ResNet-like 2D CNN at a quarter of the input's size,
   with a spatial pyramid pooling module (average pools of 64, 32, 16 and 8 px at that size): 32 channels.
2. **Cost volume** (:func:`cost_volume`): left and right features concatenated at each of the 48
   quarter-resolution disparities, ``(B, 64, 48, H/4, W/4)``.
3. **Aggregation**: 3D convolutions and three stacked hourglasses (:class:`Hourglass`), each refining
   the last; each one's matching cost adds to the one before, and the third's sum is the output (the
   first two sums, regressed, only served the training's intermediate losses).
4. **Regression** (:func:`disparity_regression`): the cost upsampled to ``(192, H, W)``, a softmax over
   disparity and its expected value: a sub-pixel disparity in ``[0, 191]`` px.

Conventions as in :mod:`s3d.stereo`: the disparity is that of the LEFT view, ``d = x_left - x_right``,
positive, in pixels of the input. :func:`psmnet_disparity` is the entry point: RGB in ``[0, 1]`` at any
size of at least 256 x 256 px (the 64 px pool at quarter size), normalised with the ImageNet statistics
the authors trained with, zero-padded at the top and right to multiples of 16 (as the authors' test
script does) and cropped back.

Upsampling aligns corners, as the authors' README says the weights need on PyTorch >= 0.4.1: their code
run as it is on today's PyTorch does not, and its median disparity on Middlebury 2006 comes out 0.7 to
1.2 px larger (bad-2px on Aloe 53 % instead of 15 %).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from s3d.config import PROJECT_ROOT
from s3d.errors import S3DError
from s3d.io.weights import file_sha256, load_safetensors_into

MAX_DISPARITY = 192  # px at the input's size
MIN_SIZE = 256  # the largest pyramid pool is 64 x 64 at a quarter of the input
PAD_MULTIPLE = 16  # two stride-2 levels of the hourglass below the quarter-size cost volume
# The authors' README ("Notice 1"): on PyTorch >= 0.4.1 add align_corners=True to the upsampling, as the
# weights were trained with it. Measured on Middlebury 2006 Aloe: bad-2px 15 % with it, 53 % without.
ALIGN_CORNERS = True
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_WEIGHTS = PROJECT_ROOT / "weights" / "psmnet_kitti2015.safetensors"
HOW = "make weights teacher=psmnet"
# sha256 of the file s3d.models.fetch_psmnet wrote here (safetensors 0.8, torch 2.14): pass it to load_psmnet to check it
WEIGHTS_SHA256 = "d2ae745863caf95d42692ae3a21cfbbd2c8a459688e1106ec05e924b26a47bf3"


def convbn(cin: int, cout: int, kernel: int, stride: int = 1, pad: int = 1, dilation: int = 1) -> nn.Sequential:
    """2D convolution without bias, then BatchNorm (names ``.0``, ``.1``); a dilated one pads by its dilation."""
    padding = dilation if dilation > 1 else pad
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=False), nn.BatchNorm2d(cout))


def convbn_3d(cin: int, cout: int, kernel: int = 3, stride: int = 1, pad: int = 1) -> nn.Sequential:
    """3D convolution without bias, then BatchNorm (names ``.0``, ``.1``)."""
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, pad, bias=False), nn.BatchNorm3d(cout))


def deconvbn_3d(cin: int, cout: int) -> nn.Sequential:
    """Transposed 3D convolution doubling each size, then BatchNorm (names ``.0``, ``.1``)."""
    return nn.Sequential(nn.ConvTranspose3d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False), nn.BatchNorm3d(cout))


class BasicBlock(nn.Module):
    """ResNet basic block as PSMNet has it: no ReLU after the sum. ``(B, cin, H, W) -> (B, cout, H/stride, W/stride)``."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Sequential(convbn(cin, cout, 3, stride, 1, dilation), nn.ReLU(inplace=True))
        self.conv2 = convbn(cout, cout, 3, 1, 1, dilation)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.conv1(x)) + shortcut


def residual_stage(cin: int, cout: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """``blocks`` basic blocks; the first changes channels and stride."""
    return nn.Sequential(BasicBlock(cin, cout, stride, dilation), *(BasicBlock(cout, cout, 1, dilation) for _ in range(blocks - 1)))


def pyramid_branch(pool: int) -> nn.Sequential:
    """Average pool of ``pool`` px, then 1x1 conv 128 -> 32 (names ``.1.0``, ``.1.1``)."""
    return nn.Sequential(nn.AvgPool2d(pool, pool), convbn(128, 32, 1, 1, 0), nn.ReLU(inplace=True))


class FeatureExtraction(nn.Module):
    """Image to matching features at a quarter of its size: ``(B, 3, H, W) -> (B, 32, H/4, W/4)``."""

    POOLS = (64, 32, 16, 8)  # branch1 .. branch4

    def __init__(self):
        super().__init__()
        self.firstconv = nn.Sequential(
            convbn(3, 32, 3, 2), nn.ReLU(inplace=True),
            convbn(32, 32, 3), nn.ReLU(inplace=True),
            convbn(32, 32, 3), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.layer1 = residual_stage(32, 32, 3)
        self.layer2 = residual_stage(32, 64, 16, stride=2)
        self.layer3 = residual_stage(64, 128, 3)
        self.layer4 = residual_stage(128, 128, 3, dilation=2)
        self.branch1, self.branch2, self.branch3, self.branch4 = (pyramid_branch(p) for p in self.POOLS)
        self.lastconv = nn.Sequential(convbn(320, 128, 3), nn.ReLU(inplace=True), nn.Conv2d(128, 32, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.layer2(self.layer1(self.firstconv(x)))  # (B, 64, H/4, W/4)
        skip = self.layer4(self.layer3(raw))  # (B, 128, H/4, W/4)
        size = skip.shape[-2:]
        pooled = [
            F.interpolate(b(skip), size=size, mode="bilinear", align_corners=ALIGN_CORNERS) for b in (self.branch4, self.branch3, self.branch2, self.branch1)
        ]
        return self.lastconv(torch.cat([raw, skip, *pooled], dim=1))


class Hourglass(nn.Module):
    """3D encoder-decoder over the cost volume: ``(B, C, D, H, W) -> (B, C, D, H, W)``, plus its two inner
    maps, which the next hourglass adds to its own (``pre`` at 1/2, ``post`` at 1/2 after the decoder)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Sequential(convbn_3d(c, 2 * c, stride=2), nn.ReLU(inplace=True))
        self.conv2 = convbn_3d(2 * c, 2 * c)
        self.conv3 = nn.Sequential(convbn_3d(2 * c, 2 * c, stride=2), nn.ReLU(inplace=True))
        self.conv4 = nn.Sequential(convbn_3d(2 * c, 2 * c), nn.ReLU(inplace=True))
        self.conv5 = deconvbn_3d(2 * c, 2 * c)
        self.conv6 = deconvbn_3d(2 * c, c)

    def forward(self, x: torch.Tensor, presqu: torch.Tensor | None, postsqu: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pre = self.conv2(self.conv1(x))
        pre = F.relu(pre if postsqu is None else pre + postsqu)
        out = self.conv4(self.conv3(pre))
        post = F.relu(self.conv5(out) + (pre if presqu is None else presqu))
        return self.conv6(post), pre, post


def classifier() -> nn.Sequential:
    """32 channels of aggregated cost to one matching cost: ``(B, 32, D, H, W) -> (B, 1, D, H, W)``."""
    return nn.Sequential(convbn_3d(32, 32), nn.ReLU(inplace=True), nn.Conv3d(32, 1, 3, padding=1, bias=False))


def cost_volume(left: torch.Tensor, right: torch.Tensor, levels: int) -> torch.Tensor:
    """Concatenation volume: ``(B, C, H, W)`` twice -> ``(B, 2C, levels, H, W)``.

    At level ``d`` and column ``x >= d`` it holds ``left[x]`` and ``right[x - d]``; columns ``x < d``,
    which have no match in the right view, are zero.
    """
    b, c, h, w = left.shape
    volume = left.new_zeros(b, 2 * c, levels, h, w)
    for d in range(levels):
        volume[:, :c, d, :, d:] = left[..., d:]
        volume[:, c:, d, :, d:] = right[..., : w - d]
    return volume


def disparity_regression(cost: torch.Tensor, size: tuple[int, int], max_disparity: int = MAX_DISPARITY) -> torch.Tensor:
    """Soft argmin: ``(B, 1, D, h, w)`` cost -> ``(B, 1, H, W)`` expected disparity in px of ``size``.

    The cost is upsampled trilinearly (corners aligned: level ``i`` of ``D`` is disparity
    ``i (max_disparity - 1) / (D - 1)``) to ``(max_disparity, H, W)``; its softmax over disparity weights
    the disparities ``0 .. max_disparity - 1``.
    """
    cost = F.interpolate(cost, size=(max_disparity, *size), mode="trilinear", align_corners=ALIGN_CORNERS).squeeze(1)
    prob = F.softmax(cost, dim=1)
    disparities = torch.arange(max_disparity, device=cost.device, dtype=cost.dtype).view(1, -1, 1, 1)
    return (prob * disparities).sum(dim=1, keepdim=True)


class PSMNet(nn.Module):
    """``left, right (B, 3, H, W)`` normalised, ``H`` and ``W`` multiples of 16, at least 256 ->
    ``(B, 1, H, W)`` disparity of the left view in px, ``[0, max_disparity)``.

    The raw network: use :func:`psmnet_disparity` for RGB in ``[0, 1]`` at any size.
    """

    def __init__(self, max_disparity: int = MAX_DISPARITY):
        super().__init__()
        self.max_disparity = max_disparity
        self.feature_extraction = FeatureExtraction()
        self.dres0 = nn.Sequential(convbn_3d(64, 32), nn.ReLU(inplace=True), convbn_3d(32, 32), nn.ReLU(inplace=True))
        self.dres1 = nn.Sequential(convbn_3d(32, 32), nn.ReLU(inplace=True), convbn_3d(32, 32))
        self.dres2, self.dres3, self.dres4 = Hourglass(32), Hourglass(32), Hourglass(32)
        self.classif1, self.classif2, self.classif3 = classifier(), classifier(), classifier()

    def costs(self, left: torch.Tensor, right: torch.Tensor) -> list[torch.Tensor]:
        """The three hourglasses' matching costs, each ``(B, 1, D/4, H/4, W/4)``, each adding to the last."""
        volume = cost_volume(self.feature_extraction(left), self.feature_extraction(right), self.max_disparity // 4)
        cost0 = self.dres0(volume)
        cost0 = self.dres1(cost0) + cost0
        out1, pre1, post1 = self.dres2(cost0, None, None)
        out1 = out1 + cost0
        out2, _, post2 = self.dres3(out1, pre1, post1)
        out2 = out2 + cost0
        out3, _, _ = self.dres4(out2, pre1, post2)  # the published model feeds the FIRST hourglass's pre here
        out3 = out3 + cost0
        cost1 = self.classif1(out1)
        cost2 = self.classif2(out2) + cost1
        cost3 = self.classif3(out3) + cost2
        return [cost1, cost2, cost3]

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """The final disparity (the third hourglass's): ``(B, 3, H, W)`` twice -> ``(B, 1, H, W)`` px."""
        return disparity_regression(self.costs(left, right)[-1], left.shape[-2:], self.max_disparity)


def normalize(image: torch.Tensor) -> torch.Tensor:
    """RGB in ``[0, 1]`` -> ImageNet-normalised, as PSMNet was trained: ``(B, 3, H, W) -> (B, 3, H, W)``."""
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def pad_amounts(h: int, w: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int]:
    """Rows to add at the top and columns at the right to make ``(h, w)`` multiples of ``multiple``."""
    return -h % multiple, -w % multiple


@torch.inference_mode()
def psmnet_disparity(net: PSMNet, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left, right (B, 3, H, W)`` RGB in ``[0, 1]``, ``H, W >= 256`` -> ``(B, 1, H, W)`` disparity of the
    left view in px (``d = x_left - x_right >= 0``, below ``net.max_disparity``).

    Runs on the device and dtype of ``net``'s weights and returns there; ``net`` should be in eval mode
    (:func:`load_psmnet` returns it so). The normalised images are zero-padded at the top and right to
    multiples of 16, as the authors' test script does, and the disparity is cropped back. Memory grows
    with the full-size cost of ``192 x H x W`` floats: about 1.6 GB a pair at 1920 x 1080.
    """
    if left.dim() != 4 or left.shape[1] != 3 or left.shape != right.shape:
        raise ValueError(f"expected left and right of one shape (B, 3, H, W), got {tuple(left.shape)} and {tuple(right.shape)}")
    h, w = left.shape[-2:]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(
            f"PSMNet needs images at least {MIN_SIZE} x {MIN_SIZE} px (its largest pyramid pool is 64 px at quarter size), got {w} x {h}; resize them up first"
        )
    weight = next(net.parameters())
    top, right_pad = pad_amounts(h, w)
    pair = [F.pad(normalize(x.to(weight.device, weight.dtype)), (0, right_pad, top, 0)) for x in (left, right)]
    disparity = net(*pair)
    return disparity[..., top:, :w]


def load_psmnet(path: str | Path | None = DEFAULT_WEIGHTS, device: torch.device | str = "cpu", sha256: str | None = None) -> PSMNet:
    """The published PSMNet from our safetensors conversion, frozen and in eval mode on ``device``.

    A missing file, a damaged one, one whose tensors are not PSMNet's (by name and shape) or, when
    ``sha256`` is given (e.g. :data:`WEIGHTS_SHA256`), one with another sha256 raises a one-line
    :class:`S3DError` naming the file.
    """
    if path is None:
        raise S3DError("<no path set: psmnet weights>", f"missing weights of the PSMNet stereo teacher; get them with: {HOW}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise S3DError(p, f"missing weights of the PSMNet stereo teacher; get them with: {HOW}")
    if sha256 and (found := file_sha256(p)) != sha256.lower():
        raise S3DError(p, f"sha256 is {found[:12]}..., expected {sha256[:12]}...: damaged or not the PSMNet weights ({HOW})")
    net = load_safetensors_into(PSMNet(), p)
    net.requires_grad_(False)
    return net.eval().to(device)
