"""The quality figures, checked on real MNIST: they must tell real digits from broken ones."""
from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import pytest
import torch

from gantui.engine.data import load_mnist_arrays
from gantui.evaluation.classifier import SHA256, load_classifier, real_stats
from gantui.evaluation.metrics import classify, evaluate, frechet_distance
from support import refused, run_process


def real_test(n: int = 10000, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """n test images in [-1, 1], drawn at random (the two halves of the test set differ)."""
    images, labels = load_mnist_arrays("test")
    idx = np.random.default_rng(seed).permutation(len(images))[:n]
    return torch.from_numpy(images[idx]).float().div(127.5).sub(1).unsqueeze(1), labels[idx]


@pytest.fixture(scope="module")
def real():
    return real_test()


def test_shipped_files_match_their_recorded_hashes():
    for name, digest in SHA256.items():
        data = resources.files("gantui.evaluation").joinpath(name).read_bytes()
        assert digest and hashlib.sha256(data).hexdigest() == digest


def test_classifier_accuracy(real):
    images, labels = real
    _, probabilities = classify(images)
    assert (probabilities.argmax(1) == labels).mean() >= 0.988
    assert real_stats()["test_accuracy"] >= 0.988


def test_real_test_images_score_like_real_data(real):
    figures = evaluate(real[0], neighbours=True)
    assert figures["fid"] < 5 and figures["fid_n"] == 10000
    assert figures["classes"] == 10 and figures["kl"] < 0.01
    assert figures["confidence"] > 0.9 and figures["score"] > 7  # the classifier was trained with label smoothing
    assert figures["coverage"] > 0.9


def test_uniform_noise_scores_terribly():
    noise = torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert evaluate(noise)["fid"] > 500


def test_missing_digits_show_in_classes_and_kl(real):
    images, labels = real
    figures = evaluate(images[torch.from_numpy(labels < 5)])
    assert figures["classes"] == 5
    assert figures["kl"] > 0.5  # log 2 for half the digits gone


def test_repeated_images_have_low_coverage(real):
    images = real[0][:100].repeat(100, 1, 1, 1)
    figures = evaluate(images, neighbours=True)
    assert figures["classes"] == 10  # the histogram cannot see it...
    assert figures["coverage"] < 0.3  # ...coverage can


def test_more_corruption_more_fid(real):
    images = real[0][:2000]
    gen = torch.Generator().manual_seed(0)
    fids = [evaluate((images + sigma * torch.randn(images.shape, generator=gen)).clamp(-1, 1))["fid"]
            for sigma in (0.0, 0.25, 0.5, 1.0)]
    assert fids == sorted(fids) and fids[-1] > 10 * fids[0]


def test_same_images_same_numbers(real):
    assert evaluate(real[0][:2000]) == evaluate(real[0][:2000])


def test_agrees_with_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Features(torch.nn.Module):
        num_features = 128

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return load_classifier().features(x.float() / 127.5 - 1)

    a, _ = real_test(2000, seed=1)  # 2,000 features of 128: a full-rank covariance, as FID needs
    b, _ = real_test(2000, seed=2)
    b = (b + 0.3 * torch.randn(b.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    as_uint8 = lambda x: ((x + 1) * 127.5).round().to(torch.uint8)  # noqa: E731
    metric = FrechetInceptionDistance(feature=Features())
    metric.update(as_uint8(a), real=True)
    metric.update(as_uint8(b), real=False)
    expected = metric.compute().item()
    fa, _ = classify(as_uint8(a).float() / 127.5 - 1)
    fb, _ = classify(as_uint8(b).float() / 127.5 - 1)
    ours = frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False), ridge=0.0)
    assert ours == pytest.approx(expected, rel=1e-4)


def test_eval_command(tmp_path, capsys):
    import json
    import sys

    from gantui.cli import main
    from gantui.config import Config
    from gantui.engine.trainer import Trainer

    run = lambda *args: run_process([sys.executable, "-m", "gantui", "eval", *args],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    real = run("--real", "--n", "500", "--json")
    assert real.returncode == 0, real.stderr
    figures = json.loads(real.stdout)
    assert figures["fid_n"] == 500 and figures["classes"] == 10 and 0 <= figures["coverage"] <= 1
    Trainer(Config(steps=2, batch_size=16, device="cpu", eval_every=0, out=str(tmp_path / "run")).validate()).run()
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--n", "500"]) == 0
    untrained = capsys.readouterr().out
    assert "FID (classifier)" in untrained
    fid = float(untrained.split("FID (classifier)")[1].split()[0])
    assert fid > 10 * figures["fid"]  # two steps of training are far from real digits
    bad = run()  # the fresh-process canary; the other refusals in this process
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    for args in (["--real", str(tmp_path / "run")], [str(tmp_path / "missing.pt")], ["--real", "--n", "0"]):
        err = refused(capsys, "eval", *args)
        assert len(err.strip().splitlines()) == 1, (args, err)
