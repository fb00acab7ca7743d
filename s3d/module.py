"""The LightningModules: one for every view-synthesis model (the input is the left eye, the target the right),
one for the learned fill of disocclusions."""

from __future__ import annotations

import kornia
import pytorch_lightning as pl
import torch

from s3d.depth.base import DepthBackend
from s3d.io.image import to_uint8
from s3d.losses import ViewLoss, masked_change, shift_rows, ssim
from s3d.models.common import ViewModel, ViewPrediction
from s3d.models.fill import FillNet, FillPrediction


class _TrainingLog(pl.LightningModule):
    """The training step both modules share: ``model_step`` -> the loss, logged with each of its terms."""

    input_key = ""  # the batch entry whose first dimension is the batch size

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        _, total, terms = self.model_step(batch)
        n = batch[self.input_key].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=n)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=n)
        return total


class ViewSynthesisModule(_TrainingLog):
    input_key = "left"

    def __init__(self, model: ViewModel, depth: DepthBackend | None, loss: ViewLoss, lr: float = 2e-4, weight_decay: float = 0.0):
        super().__init__()
        self.model, self.depth, self.loss = model, depth, loss
        self.lr, self.weight_decay = lr, weight_decay

    def model_step(self, batch: dict) -> tuple[ViewPrediction, torch.Tensor, dict[str, torch.Tensor]]:
        image, target = batch["left"], batch["right"]
        nearness = None
        if self.model.use_depth:
            nearness = self.depth(image).clone()  # the backend runs in inference mode; clone makes a normal tensor
        out = self.model(image, nearness)
        if nearness is not None:
            out.nearness = nearness
        hints, teacher = ({"left": batch[f"{m}_left"], "right": batch[f"{m}_right"]} if f"{m}_left" in batch else None for m in ("hint", "teacher"))
        total, terms = self.loss(out, target, image, hints, teacher)
        return out, total, terms

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out, total, _ = self.model_step(batch)
        pred, target = out.pred.clamp(0, 1), batch["right"]
        n = pred.shape[0]
        self.log("val/loss", total, batch_size=n, sync_dist=True)
        self.log("val/psnr", kornia.metrics.psnr(pred, target, 1.0), prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/ssim", ssim(pred, target), batch_size=n, sync_dist=True)
        if batch_idx == 0:
            self._log_panel(batch["left"], pred, target, out.disparity if out.disparity is not None else out.nearness)

    def _log_panel(self, image, pred, target, depth_like) -> None:
        """Input | generated | real | depth or disparity, for loggers that take images (W&B)."""
        log_image = getattr(self.logger, "log_image", None)
        if log_image is None:
            return
        d = depth_like[:1]
        d = (d - d.min()) / (d.max() - d.min() + 1e-7)
        panel = torch.cat((image[:1], pred[:1], target[:1], d.expand(-1, 3, -1, -1)), dim=-1)[0]
        rgb = to_uint8(panel).numpy()
        log_image(key="val/panel", images=[rgb], caption=["input | generated | real | depth/disparity"])

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)


class FillModule(_TrainingLog):
    """The learned fill (:class:`s3d.models.fill.FillNet`) on patches of :mod:`s3d.data.fill_patches`: the
    article's losses on the repainted eye against the truth, PSNR over the whole patch and over its holes; with
    ``consistency`` > 0, in training, also the weighted :meth:`restlessness` (calmer fill on video)."""

    input_key = "warped"

    def __init__(self, model: FillNet, loss: ViewLoss, lr: float = 2e-4, weight_decay: float = 0.0, consistency: float = 0.0, jitter: float = 0.5):
        super().__init__()
        self.model, self.loss = model, loss
        self.lr, self.weight_decay = lr, weight_decay
        self.consistency, self.jitter = consistency, jitter

    def model_step(self, batch: dict) -> tuple[FillPrediction, torch.Tensor, dict[str, torch.Tensor]]:
        out = self.model(batch["warped"], batch["holes"], batch["disparity"])
        total, terms = self.loss(ViewPrediction(out.pred), batch["target"], batch["warped"])
        if self.training and self.consistency > 0:
            terms["consistency"] = self.restlessness(batch, out)
            total = total + self.consistency * terms["consistency"]
        return out, total, terms

    def restlessness(self, batch: dict, out: FillPrediction) -> torch.Tensor:
        """How far the repaint strays from moving with its input when the warped eye and its disparity move along
        the row by up to ``jitter`` px (what a depth's frame-to-frame jitter does in a still shot): the mean
        |fill(moved) - moved(fill)| over the region. ``-> ()``."""
        warped = batch["warped"]
        shift = (torch.rand(warped.shape[0], device=warped.device, dtype=warped.dtype) * 2 - 1) * self.jitter
        moved = self.model(shift_rows(warped, shift), batch["holes"], batch["disparity"] + shift.view(-1, 1, 1, 1))
        return masked_change(moved.pred, shift_rows(out.pred, shift), out.region)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out, total, _ = self.model_step(batch)
        pred, target, holes = out.pred, batch["target"], batch["holes"]
        n = pred.shape[0]
        self.log("val/loss", total, batch_size=n, sync_dist=True)
        self.log("val/psnr", kornia.metrics.psnr(pred, target, 1.0), prog_bar=True, batch_size=n, sync_dist=True)
        mse = ((pred - target) ** 2).mean(1, keepdim=True)[holes].mean()
        self.log("val/psnr_holes", 10 * torch.log10(1 / mse.clamp(min=1e-10)), prog_bar=True, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.trainer.max_steps <= 0:
            return optimizer
        # trainer.max_steps set: the rate decays to zero over them (cosine), so the last weights are settled
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.trainer.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
