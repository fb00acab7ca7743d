import math

import pytest
import torch

from s3d.losses import ViewLoss, photometric_loss, smoothness_loss, ssim_loss
from s3d.models.common import ViewPrediction, coord_channels
from s3d.models.seed import SeedNet
from s3d.models.warp import WarpNet


def test_losses_zero_on_identical_images():
    x = torch.rand(2, 3, 32, 32)
    assert ssim_loss(x, x).item() == pytest.approx(0, abs=1e-6)
    assert photometric_loss(x, x).item() == pytest.approx(0, abs=1e-6)
    total, terms = ViewLoss(mse=1, ssim=1)(ViewPrediction(x), x, x)
    assert total.item() == pytest.approx(0, abs=1e-6) and set(terms) == {"mse", "ssim"}
    assert smoothness_loss(torch.ones(2, 1, 32, 32), x).item() == pytest.approx(0, abs=1e-6)


def test_losses_grow_with_difference():
    x = torch.rand(1, 3, 32, 32)
    assert ssim_loss(x, (x + 0.3).clamp(0, 1)) > ssim_loss(x, (x + 0.1).clamp(0, 1)) > 0


def test_weights_scale_terms_and_zero_weights_skip():
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    t1, terms = ViewLoss(mse=1, ssim=0)(ViewPrediction(x), y, x)
    t2, _ = ViewLoss(mse=2, ssim=0)(ViewPrediction(x), y, x)
    assert set(terms) == {"mse"} and t2.item() == pytest.approx(2 * t1.item())
    with pytest.raises(ValueError):
        ViewLoss(mse=0, ssim=0)(ViewPrediction(x), y, x)


def test_gradcheck_losses_float64():
    x = torch.rand(1, 3, 12, 12, dtype=torch.float64)
    y = torch.rand(1, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: ssim_loss(a, x, 5), (y,), eps=1e-6, atol=1e-4)
    d = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: smoothness_loss(a + 1, x), (d,), eps=1e-6, atol=1e-4)


def test_coord_channels():
    c = coord_channels(torch.zeros(2, 3, 4, 5))
    assert c.shape == (2, 2, 4, 5)
    assert c[0, 0, 0].tolist() == pytest.approx([-1, -0.5, 0, 0.5, 1]) and c[0, 1, :, 0].tolist()[0] == -1


@pytest.mark.parametrize("model", [SeedNet(width=8, depth=2, tail=1), WarpNet(width=8, depth=2, tail=1)])
def test_models_shapes_and_gradients(model):
    image, near = torch.rand(2, 3, 30, 44), torch.rand(2, 1, 30, 44)
    out = model(image, near)
    assert out.pred.shape == image.shape and 0 <= out.pred.min() and out.pred.max() <= 1
    out.pred.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_warp_model_output_is_the_input_shifted_by_its_disparity_where_not_occluded():
    """Heads set by hand: a disparity of exactly 2 px everywhere, nothing occluded. The other eye must be
    the input read 2 px to the right (direction=1), pixel for pixel: a wrong sign, unit or blend fails."""
    torch.manual_seed(0)
    model = WarpNet(width=8, depth=2, tail=1, max_disparity=0.1).eval()
    w = 24
    with torch.no_grad():
        model.disparity.weight.zero_()
        model.disparity.bias.fill_(math.atanh(2 / (0.1 * w)))  # tanh(b) * 0.1 * w = 2 px
        model.mask.weight.zero_()
        model.mask.bias.fill_(-60.0)  # occlusion = sigmoid(-62) ~ 0
        image = torch.rand(1, 3, 16, w)
        out = model(image, torch.rand(1, 1, 16, w))
    torch.testing.assert_close(out.disparity, torch.full((1, 1, 16, w), 2.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.pred[..., : w - 2], image[..., 2:], atol=1e-4, rtol=0)
    assert out.occlusion.max() < 1e-20
