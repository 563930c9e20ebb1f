"""The DCGAN of the reference design: 28x28 grey images, a 100-d latent, logits out of D.

With `classes`, both are class-conditional. G's batch norms take their gain and bias from the
label, its only input being the latent: with a label embedding beside the latent instead, G came
to draw one image per digit whatever its z (seed 0, every column of a grid row the same by step
6000), the label having taken the batch's variance that the batch norm scales. D is a projection
discriminator (Miyato & Koyama 2018), its score plus the inner product of a label embedding with
its features, with a classifier head on the same features (AC-GAN, Odena et al. 2017) trained on
real images only, whose cross-entropy on G's images joins G's loss: with the projection alone a
label could be taken over by another class early and not won back (seed 0: every "0" drawn as a 2
or a 3 after 1 and after 5 epochs). Conditional G with batch-norm gains, no head: 33% of samples
read as asked at step 500; with the head, 66% (and FID 56 against 219).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Stride1ConvTranspose(torch.autograd.Function):
    """A stride-1 transposed convolution whose weight gradient is a forward convolution.

    On AMX CPUs oneDNN's weight-gradient kernel for G's first layer (256 -> 128 channels, 7x7)
    runs at about half the speed of its forward kernel. At stride 1 the weight gradient is itself
    a plain convolution, of the output gradient with the input, batch as channels (the same sums
    in another order), and oneDNN's forward kernel does it faster: the layer's gradients in 0.69x
    the time, a training step 0.94-0.98x (`benchmarks/conv_backward.py`). Strided layers would
    need a dilated convolution, which measured no faster, so they keep torch's layers. The input
    gradient is the adjoint convolution, the kernel torch uses too. `tests/test_fast_paths.py`
    checks the gradients against torch's.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv_transpose2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = F.conv2d(grad, weight, padding=ctx.padding)
        if ctx.needs_input_grad[1]:
            # dw[c, o, p, q] = sum over b, y, x of x[b, c, y, x] * grad[b, o, y + p - pad, x + q - pad]
            dw = F.conv2d(grad.transpose(0, 1), x.transpose(0, 1), padding=ctx.padding).transpose(0, 1)
        if ctx.needs_input_grad[2]:
            db = grad.sum((0, 2, 3))
        return dx, dw, db, None


class ConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d with the backward above when training at stride 1 on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = (self.stride, self.dilation, self.groups, self.output_padding) != ((1, 1), (1, 1), 1, (0, 0))
        if x.device.type != "cpu" or not torch.is_grad_enabled() or plain:
            return super().forward(x)
        # Cast as autocast would; the backward then runs in the precision of the forward.
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        bias = None if self.bias is None else self.bias.to(dtype)
        return _Stride1ConvTranspose.apply(x.to(dtype), self.weight.to(dtype), bias, self.padding)


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose gain and bias are the class's own (de Vries et al. 2017, Dumoulin et al.
    2017): the conditional G of Miyato & Koyama's projection discriminator."""

    def __init__(self, features: int, classes: int, norm: type[nn.Module]) -> None:
        super().__init__()
        self.bn = norm(features, affine=False)
        self.gain, self.bias = nn.Embedding(classes, features), nn.Embedding(classes, features)
        nn.init.normal_(self.gain.weight, 1.0, 0.02)  # as init_weights starts a plain batch norm
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        shape = (-1, x.shape[1]) + (1,) * (x.dim() - 2)
        return self.bn(x) * self.gain(labels).to(x.dtype).view(shape) + self.bias(labels).to(x.dtype).view(shape)


class Generator(nn.Module):
    def __init__(self, z_dim: int = 100, classes: int = 0, channels: int = 1) -> None:
        super().__init__()
        self.z_dim, self.classes = z_dim, classes

        def norm(features: int, kind: type[nn.Module]) -> nn.Module:
            return ConditionalBatchNorm(features, classes, kind) if classes else kind(features)

        self.project = nn.Sequential(
            nn.Linear(z_dim, 7 * 7 * 256, bias=False),
            norm(7 * 7 * 256, nn.BatchNorm1d),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.deconv = nn.Sequential(
            ConvTranspose2d(256, 128, 5, stride=1, padding=2, bias=False),
            norm(128, nn.BatchNorm2d),
            nn.LeakyReLU(0.2, inplace=True),
            nn.ConvTranspose2d(128, 64, 5, stride=2, padding=2, output_padding=1, bias=False),
            norm(64, nn.BatchNorm2d),
            nn.LeakyReLU(0.2, inplace=True),
            nn.ConvTranspose2d(64, channels, 5, stride=2, padding=2, output_padding=1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if not self.classes:
            return self.deconv(self.project(z).view(-1, 256, 7, 7))
        x = conditional(self.project, z, labels).view(-1, 256, 7, 7)
        return conditional(self.deconv, x, labels)


def conditional(layers: nn.Sequential, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`layers` applied in turn, the label going to each conditional batch norm."""
    for layer in layers:
        x = layer(x, labels) if isinstance(layer, ConditionalBatchNorm) else layer(x)
    return x


class Dropout(nn.Dropout):
    """nn.Dropout with a cheaper mask on the CPU.

    On the CPU `bernoulli_` draws one Mersenne-Twister number per element, and a bool mask
    applied with `masked_fill_` runs a slow path for bf16: dropout was a fifth of a training
    step here. This mask cuts each 64-bit draw into eight bytes, keeps an element when its byte
    is at least round(p * 256) (the drop rate is p to within 0.002: 0.3008 for 0.3), and
    multiplies by it: forward and backward 2.3x faster than such a mask with masked_fill_, 3.8x
    nn.Dropout, in bf16 (`benchmarks/dropout.py`). Elsewhere (CUDA's
    Philox is cheap) it is nn.Dropout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        n = x.numel()
        draws = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64)
        keep = draws.view(torch.uint8)[:n].view(x.shape) >= round(self.p * 256)
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


class Discriminator(nn.Module):
    """The reference D for 28x28 images; with `net` (ending in its features' Linear to one score)
    and their size `features`, any other body with the same heads."""

    def __init__(self, classes: int = 0, channels: int = 1, net: nn.Sequential | None = None,
                 features: int = 128 * 7 * 7) -> None:
        super().__init__()
        self.embed = nn.Embedding(classes, features) if classes else None
        if self.embed is not None:  # small, like the layers: the projection starts as a nudge
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        self.classify = nn.Linear(features, classes) if classes else None
        self.net = net or nn.Sequential(
            nn.Conv2d(channels, 64, 5, stride=2, padding=2),
            nn.LeakyReLU(0.2, inplace=True),
            Dropout(0.3),
            nn.Conv2d(64, 128, 5, stride=2, padding=2),
            nn.LeakyReLU(0.2, inplace=True),
            Dropout(0.3),
            nn.Flatten(),
            nn.Linear(128 * 7 * 7, 1),
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                classify: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """D's scores; with `classify` (a conditional D), also its class logits."""
        if self.embed is None:
            return self.net(x).squeeze(1)
        features = self.net[:-1](x)
        projection = (self.embed(labels).to(features.dtype) * features).sum(dim=1)
        score = self.net[-1](features).squeeze(1) + projection
        return (score, self.classify(features)) if classify else score


def add_spectral_norm(D: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every convolution and linear layer of D,
    after initialisation (it reparametrises the weights it finds)."""
    from torch.nn.utils.parametrizations import spectral_norm

    for module in D.modules():
        if isinstance(module, nn.Conv2d | nn.Linear | nn.Embedding):
            spectral_norm(module)
    return D


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al.): N(0, 0.02) weights, BN gamma N(1, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
