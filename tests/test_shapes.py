"""Every recipe works with every shape: the reference layout for 28x28, the DCGAN for 32, 64 and
128, one channel or three; CIFAR-10 read from its own batch files."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from gantui.config import Config
from gantui.datasets import DATASETS
from gantui.engine.batches import BatchStream
from gantui.engine.data import load_dataset, to_uint8
from gantui.engine.gan import GAN
from gantui.engine.networks import build_discriminator, build_generator, parameters

SHAPES = [(1, 28, 28), (3, 28, 28), (3, 32, 32), (1, 64, 64), (3, 128, 128)]
RECIPES = {
    "ns": {}, "minimax": {"loss": "minimax"}, "hinge": {"loss": "hinge"}, "lsgan": {"loss": "lsgan"},
    "wgan-gp, 2 critic steps": {"loss": "wgan-gp", "d_steps": 2}, "r1": {"r1": 1.0},
    "spectral norm": {"spectral_norm": True}, "ema": {"ema": 0.9}, "diffaug": {"diffaug": "color,translation,cutout"},
    "conditional": {"conditional": True}, "uniform noise": {"noise": "uniform"},
}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_trains_at_every_shape(shape, recipe):
    torch.manual_seed(0)
    cfg = Config.of(device="cpu", batch_size=4, z_dim=16, **RECIPES[recipe]).validate()
    gan = GAN(cfg, torch.device("cpu"), bf16=False, classes=10, shape=shape)
    images = torch.randint(0, 256, (16, *shape), dtype=torch.uint8)
    batches = BatchStream(images, torch.arange(16) % 10 if cfg.conditional else None, 4, seed=0)
    before = [p.detach().clone() for p in gan.G.parameters()]
    gan.step(batches)
    gan.step(batches)
    figures = gan.read()
    assert all(np.isfinite(v) for v in figures.values()), figures
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.G.parameters()))  # G learned
    labels = torch.arange(3) if cfg.conditional else None
    out = gan.generate(gan.noise(3), labels)
    assert out.shape == (3, *shape)
    pixels = to_uint8(out)
    assert pixels.shape == ((3, *shape[1:]) if shape[0] == 1 else (3, *shape[1:], 3)) and pixels.dtype == np.uint8


def test_the_dcgan_follows_radford_et_al():
    """Strided 4x4 transposed convolutions, batch norm and ReLU in G; strided 4x4 convolutions and
    LeakyReLU in D, no batch norm after its first layer nor under a gradient penalty."""
    G = build_generator((3, 64, 64), 100, 0)
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.kernel_size for m in convs] == [(4, 4)] * 5 and [m.stride for m in convs] == [(1, 1)] + [(2, 2)] * 4
    assert [m.out_channels for m in convs] == [512, 256, 128, 64, 3]
    assert sum(isinstance(m, torch.nn.ReLU) for m in G.modules()) == 4
    D = build_discriminator((3, 64, 64), 0)
    layers = list(D.net)
    assert isinstance(layers[0], torch.nn.Conv2d) and isinstance(layers[1], torch.nn.LeakyReLU)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules()) == 3
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in build_discriminator((3, 64, 64), 0, False).modules())
    assert D(torch.zeros(2, 3, 64, 64)).shape == (2,)
    # the published DCGAN G at 64x64 RGB, 100-d latent: 3.58M parameters
    assert parameters(G) == 3_576_704


def write_cifar(root, n_per_batch=20, seed=0):
    """CIFAR-10's python batch files: pickled dicts of (N, 3072) uint8 rows (R, then G, then B
    planes) and their labels (the real files are Python 2 pickles, read with latin1 into these str keys)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = []
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": labels}))
        batches.append((data, labels))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(DATASETS["cifar10"].classes)}))
    return batches


def test_cifar10_loads_from_its_batch_files_and_trains(tmp_path, monkeypatch, tiny_config):
    import torchvision.datasets

    batches = write_cifar(tmp_path / "data")
    # torchvision checks each file's MD5: not the fixtures'
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)
    images, labels = load_dataset(DATASETS["cifar10"], torch.device("cpu"), tmp_path / "data")
    assert images.shape == (100, 3, 32, 32) and images.dtype == torch.uint8
    first = batches[0][0][0]
    assert torch.equal(images[0, 0].flatten(), torch.from_numpy(first[:1024]))  # the red plane
    assert torch.equal(images[0, 2].flatten(), torch.from_numpy(first[2048:]))  # the blue plane
    assert labels[:20].tolist() == batches[0][1]

    from gantui.engine.trainer import Trainer
    from support import AlwaysPreview

    events = []
    cfg = tiny_config(dataset="cifar10", data_root=str(tmp_path / "data"), conditional=True, batch_size=8, steps=6,
                      log_every=2, preview_count=20)
    finished = Trainer(cfg, events.append, previews=AlwaysPreview()).run()
    assert finished.reason == "done", finished.error
    rows = [e.row for e in events if type(e).__name__ == "Metrics"]
    assert all(np.isfinite(r["loss_g"]) for r in rows) and rows[0]["loss_g"] != rows[-1]["loss_g"]
    preview = next(e for e in events if type(e).__name__ == "Preview")
    assert preview.images.shape == (20, 32, 32, 3) and preview.row == 2  # 2 per class, one row each
    notices = " ".join(e.text for e in events if type(e).__name__ == "Notice")
    assert "cifar10 3x32x32: G " in notices and "quality evaluation is off" in notices
