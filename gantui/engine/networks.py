"""G and D for a dataset's shape: the reference layout (models.py) for 28x28, the standard DCGAN
(Radford et al. 2015) for 32, 64 and 128, any channel count.

The DCGAN: G projects the latent to 4x4 with a transposed convolution and doubles the size with
strided 4x4 transposed convolutions, batch norm and ReLU, tanh out; D halves it with strided 4x4
convolutions and LeakyReLU(0.2), batch norm after the first, down to 4x4, then a linear score.
The widths halve from G's input to its output (64 at the last layer, at most 512), and double in D.
D drops its batch norm under a gradient penalty or spectral norm: the penalty is per image, which a
batch statistic couples (Gulrajani et al. 2017 use none in the critic), and SN-GAN's D has none.
"""
from __future__ import annotations

from torch import nn

from gantui.engine.models import ConditionalBatchNorm, Discriminator, Generator, conditional

WIDTH, MAX_WIDTH = 64, 512


def widths(size: int) -> list[int]:
    """Feature maps at 4x4, 8x8, ... up to size/2: G's widths, and D's in reverse."""
    doublings = size.bit_length() - 3  # 32 -> 3 (4, 8, 16), 64 -> 4, 128 -> 5
    return [min(WIDTH * 2 ** (doublings - 1 - i), MAX_WIDTH) for i in range(doublings)]


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int, classes: int, channels: int, size: int) -> None:
        super().__init__()
        self.z_dim, self.classes = z_dim, classes

        def norm(features: int) -> nn.Module:
            return ConditionalBatchNorm(features, classes, nn.BatchNorm2d) if classes else nn.BatchNorm2d(features)

        w = widths(size)
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, w[0], 4, 1, 0, bias=False), norm(w[0]), nn.ReLU(True)]
        for a, b in zip(w, w[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), norm(b), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(w[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z, labels=None):
        z = z.view(*z.shape, 1, 1)
        return self.net(z) if not self.classes else conditional(self.net, z, labels)


def dcgan_discriminator(classes: int, channels: int, size: int, batch_norm: bool) -> Discriminator:
    w = widths(size)[::-1]  # D's widths: 64 at size/2, doubling down to 4x4
    layers: list[nn.Module] = [nn.Conv2d(channels, w[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
    for a, b in zip(w, w[1:]):
        layers += [nn.Conv2d(a, b, 4, 2, 1, bias=not batch_norm), *([nn.BatchNorm2d(b)] if batch_norm else []),
                   nn.LeakyReLU(0.2, inplace=True)]
    layers += [nn.Flatten(), nn.Linear(w[-1] * 16, 1)]
    return Discriminator(classes, net=nn.Sequential(*layers), features=w[-1] * 16)


def build_generator(shape: tuple[int, int, int], z_dim: int, classes: int) -> nn.Module:
    channels, size, _ = shape
    return Generator(z_dim, classes, channels) if size == 28 else DCGANGenerator(z_dim, classes, channels, size)


def build_discriminator(shape: tuple[int, int, int], classes: int, batch_norm: bool = True) -> Discriminator:
    """`batch_norm`: the DCGAN's, off under a gradient penalty or spectral norm (the reference
    layout for 28x28 has none)."""
    channels, size, _ = shape
    return Discriminator(classes, channels) if size == 28 else dcgan_discriminator(classes, channels, size, batch_norm)


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
