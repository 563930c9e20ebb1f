"""A GAN training loop of your own, as a tutorial ends with one, published to gantui.

The lines marked `# gantui` are all it takes; watch it from another terminal with
`gantui watch` (pause, stop, save and the learning rate from there too).

    python examples/gan_loop.py --steps 3000
"""
from __future__ import annotations

import argparse
from importlib import resources

import numpy as np
import torch
from torch import nn

import gantui  # gantui

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=3000)
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--lr", type=float, default=2e-4)
p.add_argument("--out", default=None)
p.add_argument("--seed", type=int, default=0)
opt = p.parse_args()
torch.manual_seed(opt.seed)
torch.set_num_threads(1)

with resources.files("gantui.data").joinpath("mnist.npz").open("rb") as f:  # any images will do
    real_images = torch.from_numpy(np.load(f)["train_images"]).float().div(127.5).sub(1).flatten(1)

G = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 784), nn.Tanh())
D = nn.Sequential(nn.Linear(784, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=opt.lr, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), lr=opt.lr, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
ones, zeros = torch.ones(opt.batch_size, 1), torch.zeros(opt.batch_size, 1)

run = gantui.init(name="gan-loop", config=vars(opt), out=opt.out, total_steps=opt.steps,  # gantui
                  tunable={"lr": opt.lr})
run.on_set(lambda values: [g.update(lr=values["lr"]) for o in (opt_g, opt_d) for g in o.param_groups])
run.on_save(lambda: torch.save({"G": G.state_dict(), "D": D.state_dict()}, "gan_loop.pt") or "gan_loop.pt")

for step in range(1, opt.steps + 1):
    real = real_images[torch.randint(len(real_images), (opt.batch_size,))]
    fake = G(torch.randn(opt.batch_size, 64))
    d_real, d_fake = D(real), D(fake.detach())
    loss_d = bce(d_real, ones) + bce(d_fake, zeros)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    loss_g = bce(D(fake), ones)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    run.log({"Loss_D": loss_d, "Loss_G": loss_g, "D_x": d_real.sigmoid().mean(),  # gantui
             "D_G_z": d_fake.sigmoid().mean()}, step=step)
    if step % 20 == 0:
        run.log_images(fake.view(-1, 1, 28, 28), step=step)  # gantui
    if run.should_stop:  # gantui
        break
run.finish()  # gantui
