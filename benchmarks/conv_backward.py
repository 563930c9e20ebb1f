"""The backward of each convolution of G and D on the CPU: torch's kernel against forward convolutions.

    python benchmarks/conv_backward.py
    python benchmarks/conv_backward.py --dtype fp32

For every convolution, with the batch it sees in a training step (64 for G, 64 real + 64
generated for D), the input and weight gradients are computed in turns in one process by
torch's own backward (`aten.convolution_backward`, oneDNN here) and by forward convolutions
only: the input gradient by the adjoint convolution, the weight gradient by a convolution of
one of input and output gradient with the other, batch as channels, dilated by the stride.
Medians of --repeats; the ratio is the median of the ratios of turns taken back to back, so the
machine's drift cancels. gantui uses the second form where it is clearly faster: G's first
layer, the one at stride 1 (`engine.models.ConvTranspose2d`). Then whole training steps, in turns
of 10: gantui's trainer as it is, and with torch's own layer in G's first place.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from gantui.config import Config
from gantui.engine.trainer import Trainer
from reference import plain_torch  # this folder's reference loop: torch's own layers in place of gantui's

# name: input shape, weight shape, stride, padding, output padding, transposed, input gradient needed
LAYERS = {
    "G.deconv1": ((64, 256, 7, 7), (256, 128, 5, 5), 1, 2, 0, True, True),
    "G.deconv2": ((64, 128, 7, 7), (128, 64, 5, 5), 2, 2, 1, True, True),
    "G.deconv3": ((64, 64, 14, 14), (64, 1, 5, 5), 2, 2, 1, True, True),
    "D.conv1": ((128, 1, 28, 28), (64, 1, 5, 5), 2, 2, 0, False, False),
    "D.conv2": ((128, 64, 14, 14), (128, 64, 5, 5), 2, 2, 0, False, True),
}


def forward_form(grad, x, weight, stride, padding, out_pad, transposed, need_dx):
    k = weight.shape[-1]
    dx = None
    if need_dx:
        dx = (F.conv2d(grad, weight, stride=stride, padding=padding) if transposed else
              F.conv_transpose2d(grad, weight, stride=stride, padding=padding,
                                 output_padding=x.shape[-1] - ((grad.shape[-1] - 1) * stride - 2 * padding + k)))
    a, b = (grad, x) if transposed else (x, grad)
    dw = F.conv2d(a.transpose(0, 1), b.transpose(0, 1), padding=padding, dilation=stride).transpose(0, 1)
    return dx, dw[..., :k, :k]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--step-rounds", type=int, default=15)
    args = p.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(f"{args.dtype}, input and weight gradients of one layer, median of {args.repeats} turns, "
          f"{torch.get_num_threads()} threads:")
    for name, (xs, ws, stride, padding, out_pad, transposed, need_dx) in LAYERS.items():
        x, weight = torch.randn(xs, dtype=dtype), (0.05 * torch.randn(ws)).to(dtype)
        y = (F.conv_transpose2d(x, weight, stride=stride, padding=padding, output_padding=out_pad) if transposed
             else F.conv2d(x, weight, stride=stride, padding=padding))
        grad = torch.randn_like(y)
        ways = {
            "torch": lambda: torch.ops.aten.convolution_backward(
                grad, x, weight, None, (stride,) * 2, (padding,) * 2, (1, 1), transposed, (out_pad,) * 2, 1,
                (need_dx, True, False)),
            "forward convs": lambda: forward_form(grad, x, weight, stride, padding, out_pad, transposed, need_dx),
        }
        ref, ours = ways["torch"](), ways["forward convs"]()
        error = (ours[1].float() - ref[1].float()).norm() / ref[1].float().norm()
        times: dict[str, list[float]] = {key: [] for key in ways}
        for i in range(args.repeats + 3):
            for key, way in ways.items():
                start = time.perf_counter()
                way()
                if i >= 3:  # warm-up: oneDNN builds its kernels on first use
                    times[key].append(time.perf_counter() - start)
        ratio = statistics.median(b / a for a, b in zip(times["torch"], times["forward convs"]))
        print(f"  {name:10s} torch {statistics.median(times['torch']) * 1000:6.2f} ms   forward convs "
              f"{statistics.median(times['forward convs']) * 1000:6.2f} ms   ratio {ratio:.2f}   "
              f"(weight gradients differ by {error:.0e})")
    steps(args.step_rounds, args.dtype)


def steps(rounds: int, dtype: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for name in ("gantui", "torch's layer"):
            trainer = Trainer(Config(out=f"{tmp}/{len(trainers)}", device="cpu", precision=dtype, eval_every=0).validate())
            trainer._setup()
            if name != "gantui":
                plain_torch(trainer.gan.G)
            trainers[name] = trainer
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for i in range(rounds + 1):
            for name, trainer in trainers.items():
                start = time.perf_counter()
                for _ in range(10):
                    trainer._train_step()
                trainer.meter.sums.tolist()
                if i:  # the first round warms up
                    times[name].append((time.perf_counter() - start) / 10)
    ours, theirs = times["gantui"], times["torch's layer"]
    ratio = statistics.median(a / b for a, b in zip(ours, theirs))
    print(f"training steps, {rounds} turns of 10: gantui {statistics.median(ours) * 1000:.1f} ms, "
          f"with torch's layer {statistics.median(theirs) * 1000:.1f} ms, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
