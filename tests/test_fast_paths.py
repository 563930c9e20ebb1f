"""The fast paths stay honest: no device reads in the step, a dropout that drops what it should,
bf16 that trains, the one-batch D step equal to the usual two passes, convolution gradients equal to torch's."""
from __future__ import annotations

import platform
import resource
import statistics

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from gantui.engine.device import cpu_threads, use_bf16
from gantui.engine.models import ConvTranspose2d, Discriminator, Dropout
from gantui.engine.trainer import Trainer

# Tensor methods that copy a value to the host: a CPU-GPU sync point on CUDA.
HOST_READS = {"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "nonzero"}


class HostReads(TorchFunctionMode):
    """Records every tensor call that would read a value back to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def test_the_training_step_never_reads_from_the_device(tiny_config):
    trainer = Trainer(tiny_config(steps=1000))
    trainer._setup()
    with HostReads() as reads:
        for _ in range(4):
            trainer._train_step()
    assert reads.calls == []
    with HostReads() as reads:  # the metrics read, once per --log-every, is the one that does
        trainer.clock.count(64)
        trainer.outputs.log()
    assert reads.calls == ["tolist"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_training_step_does_not_sync_on_cuda(tiny_config):
    trainer = Trainer(tiny_config(steps=1000, device="cuda"))
    trainer._setup()
    trainer._train_step()  # warm-up: cuDNN autotuning may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(4):
            trainer._train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_a_cpu_step_reuses_memory_instead_of_faulting_in_pages(tiny_config):
    """With glibc's defaults every step here faulted in ~2600 fresh pages; kept memory is reused
    (a step now and then still grows the heap, hence the median)."""
    trainer = Trainer(tiny_config(steps=1000, batch_size=64))
    trainer._setup()
    faults = []
    for _ in range(12):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        trainer._train_step()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert statistics.median(faults[4:]) < 100, faults


def test_fast_dropout_drops_at_the_rate_of_nn_dropout():
    torch.manual_seed(0)
    x = torch.ones(64, 64, 14, 14)
    fast = Dropout(0.3)(x)
    assert fast.unique().tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert (fast == 0).float().mean().item() == pytest.approx(0.3, abs=0.002)
    assert fast.mean().item() == pytest.approx(1.0, abs=0.005)  # unbiased, like nn.Dropout
    a, b = Dropout(0.3)(x), Dropout(0.3)(x)
    assert not torch.equal(a, b)  # a fresh mask each call
    assert torch.equal(Dropout(0.3).eval()(x), x)
    x.requires_grad_()
    out = Dropout(0.3)(x)
    out.sum().backward()
    assert torch.equal(x.grad, (out != 0).float() / 0.7)  # gradients flow through the kept units only


CONVS = [  # G's first layer, an odd one, and a strided one that keeps torch's backward
    ((256, 128, 5), dict(padding=2, bias=False), (4, 256, 7, 7), True),
    ((3, 8, (3, 5)), dict(padding=(1, 2)), (2, 3, 5, 6), True),
    ((128, 64, 5), dict(stride=2, padding=2, output_padding=1, bias=False), (4, 128, 7, 7), False),
]


@pytest.mark.parametrize("sizes, kwargs, shape, ours_used", CONVS)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_transposed_convolution_gradients_equal_torchs(sizes, kwargs, shape, ours_used, precision):
    """The CPU backward of stride-1 layers, built from forward convolutions, gives torch's gradients
    for the input, the weight and the bias: to float rounding in fp32, to bf16 rounding under autocast."""
    torch.manual_seed(0)
    ours = ConvTranspose2d(*sizes, **kwargs)
    theirs = nn.ConvTranspose2d(*sizes, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(shape)
    grads = []
    for layer in (ours, theirs):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = layer(xi)
        assert (type(out.grad_fn).__name__ == "_Stride1ConvTransposeBackward") == (layer is ours and ours_used)
        out.float().mul(torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        grads.append([out.float(), xi.grad, *(p.grad for p in layer.parameters())])
    tol = 1e-5 if precision == "fp32" else 2e-2
    for a, b in zip(*grads):
        assert a.dtype == b.dtype == torch.float32
        assert (a - b).norm() <= tol * b.norm()


def test_one_batch_d_step_equals_two_passes():
    """D has no batch norm: D(cat(real, fake)) is D(real) and D(fake), and the loss is their sum."""
    torch.manual_seed(0)
    D = Discriminator().eval()  # no dropout, so both sides see the same network
    real, fake = torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)
    loss = nn.BCEWithLogitsLoss()
    logits = D(torch.cat((real, fake)))
    one_batch = 2 * loss(logits, torch.cat((torch.ones(8), torch.zeros(8))))
    two_passes = loss(D(real), torch.ones(8)) + loss(D(fake), torch.zeros(8))
    assert one_batch.item() == pytest.approx(two_passes.item(), rel=1e-5)


def test_precision_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert use_bf16("bf16", cpu) and not use_bf16("fp32", cpu)
    assert not use_bf16("fp32", cuda)
    assert use_bf16("auto", cpu) == bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def test_cpu_threads_follow_omp_num_threads_else_the_cores_shared_among_a_machines_ranks(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert cpu_threads({}) == 4
    assert cpu_threads({"LOCAL_WORLD_SIZE": "2"}) == 2  # two ranks on four cores: two threads each
    assert cpu_threads({"LOCAL_WORLD_SIZE": "8"}) == 1
    assert cpu_threads({"OMP_NUM_THREADS": "3", "LOCAL_WORLD_SIZE": "2"}) == 3  # the user's, or torchrun's 1
    assert cpu_threads({"OMP_NUM_THREADS": "many"}) == 4


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_both_precisions_learn(tiny_config, precision):
    """A short run in each precision: finite losses, and D learns to tell real from fake."""
    trainer = Trainer(tiny_config(steps=60, log_every=20, precision=precision))
    assert trainer.run().reason == "done"
    rows = [r for r in trainer.run_dir.read_metrics() if "loss_d" in r]
    assert all(isinstance(r["loss_d"], float) for r in rows)
    assert rows[-1]["d_real"] > rows[-1]["d_fake"]


def test_compile_trains(tiny_config):
    """--compile: torch.compile'd G and D train to the same kind of numbers (about 45 s to compile here)."""
    events: list = []
    trainer = Trainer(tiny_config(steps=6, log_every=3, compile=True), events.append)
    assert trainer.run().reason == "done"
    rows = [r for r in trainer.run_dir.read_metrics() if "loss_d" in r]
    assert len(rows) == 2 and all(0 < r["loss_d"] < 5 and 0 < r["loss_g"] < 10 for r in rows)
    assert any("compiling" in getattr(e, "text", "") for e in events)


def test_the_bundled_mnist_is_unpacked_once_into_the_user_cache_and_read_from_there(tmp_path, monkeypatch):
    """Inflating the package's MNIST costs every start 0.2-0.6 s; the unpacked copy a few ms."""
    import numpy as np

    from gantui.engine.data import load_mnist_arrays

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    load_mnist_arrays.cache_clear()
    try:
        images, labels = load_mnist_arrays("test")
        assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
        (saved,) = {p.parent for p in (tmp_path / "cache").rglob("test_labels.npy")}
        np.save(saved / "test_labels.npy", np.zeros_like(labels))  # a mark: read back only from the cache
        load_mnist_arrays.cache_clear()
        assert not load_mnist_arrays("test")[1].any()

        (tmp_path / "blocked").write_text("")  # a cache that cannot be made: inflated every time, no error
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocked"))
        load_mnist_arrays.cache_clear()
        again_images, again_labels = load_mnist_arrays("test")
        assert (again_images == images).all() and (again_labels == labels).all()
    finally:
        load_mnist_arrays.cache_clear()  # the other tests of this process read the real arrays
