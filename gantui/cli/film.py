"""The run as a film: `gantui gif RUN` makes an animated GIF (or WebP) of the fixed-noise sample
grids, each frame labelled with its step; `gantui interpolate CHECKPOINT` a looping latent walk.

Torch-free but for the walk's generation (engine/sample.py); frames are Pillow images.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from gantui.cli.commands import root_arg
from gantui.cli.parser import Parser, fail
from gantui.run.rundir import atomic_write
from gantui.run.runs import resolve_run

FORMATS = {".gif": "GIF", ".webp": "WEBP"}
LABEL_HEIGHT = 20
LABEL_GROUND, LABEL_INK = (24, 24, 24), (235, 235, 235)


def check_film(out: Path, fps: float) -> None:
    if out.suffix.lower() not in FORMATS:
        fail(f"--out {out}: use a .gif or .webp file name")
    if not 0 < fps <= 50:
        fail(f"--fps must be above 0 and at most 50, got {fps:g}")


def labelled(grid: Image.Image, text: str) -> Image.Image:
    """The grid under a strip holding `text`."""
    frame = Image.new("RGB", (grid.width, grid.height + LABEL_HEIGHT), LABEL_GROUND)
    frame.paste(grid.convert("RGB"), (0, LABEL_HEIGHT))
    draw = ImageDraw.Draw(frame)
    draw.text((6, LABEL_HEIGHT // 2), text, fill=LABEL_INK, anchor="lm", font=ImageFont.load_default(14))
    return frame


def save_animation(frames: list[Image.Image], out: Path, fps: float) -> None:
    """An endlessly looping GIF or WebP (by `out`'s extension), written whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: frames[0].save(f, format=FORMATS[out.suffix.lower()], save_all=True,
                                               append_images=frames[1:], duration=round(1000 / fps), loop=0))


def gif(argv: list[str]) -> int:
    p = Parser(prog="gantui gif", description="An animated GIF (or WebP) of a run's sample grids, one frame a grid.")
    p.add_argument("run", help="a run directory or a run's name")
    p.add_argument("--out", required=True, type=Path, help="progress.gif, or .webp")
    p.add_argument("--fps", type=float, default=4.0, help="frames per second (default 4)")
    p.add_argument("--every", type=int, default=1, help="every K-th grid (default 1: all; the last always)")
    root_arg(p)
    args = p.parse_args(argv)
    check_film(args.out, args.fps)
    if args.every < 1:
        fail(f"--every must be a positive integer, got {args.every}")
    run_dir = resolve_run(args.run, args.root)
    run = run_dir.path
    grids = run_dir.grids()
    if not grids:
        fail(f"{run}: no sample grids in samples/ yet (one is saved every --sample-every steps)")
    chosen = grids[::args.every] + ([grids[-1]] if (len(grids) - 1) % args.every else [])
    frames = []
    for step, path in chosen:
        try:
            with Image.open(path) as grid:
                grid.load()
                if frames and grid.size != (frames[0].width, frames[0].height - LABEL_HEIGHT):
                    grid = grid.resize((frames[0].width, frames[0].height - LABEL_HEIGHT))
                frames.append(labelled(grid, f"step {step:,}"))
        except OSError:  # a damaged grid (a full disk when it was written) is left out
            continue
    if not frames:
        fail(f"{run}: none of its sample grids could be read")
    try:
        save_animation(frames, args.out, args.fps)
    except OSError as err:
        fail(f"{args.out}: {err.strerror or err}", code=1)
    print(f"wrote {len(frames)} frames ({chosen[0][0]:,} to {chosen[-1][0]:,}) to {args.out}")
    return 0


def interpolate(argv: list[str]) -> int:
    p = Parser(prog="gantui interpolate", description="A looping latent walk: spherical interpolation between "
                                                      "random points, one walk per tile.")
    p.add_argument("checkpoint", help="checkpoint file or run directory")
    p.add_argument("--out", required=True, type=Path, help="walk.gif, or .webp")
    p.add_argument("--n", type=int, default=16, help="walks side by side (default 16)")
    p.add_argument("--points", type=int, default=4, help="random points each walk visits (default 4)")
    p.add_argument("--frames", type=int, default=12, help="frames from one point to the next (default 12)")
    p.add_argument("--fps", type=float, default=12.0, help="frames per second (default 12)")
    p.add_argument("--seed", type=int, default=0, help="seed of the points (default 0)")
    p.add_argument("--device", default="cpu", help="device to generate on (default cpu)")
    args = p.parse_args(argv)
    check_film(args.out, args.fps)
    for name, low, high in (("n", 1, 256), ("points", 2, 64), ("frames", 1, 240)):
        if not low <= getattr(args, name) <= high:
            fail(f"--{name} must be from {low} to {high}, got {getattr(args, name)}")
    from gantui.engine.sample import latent_walk

    grids = latent_walk(args.checkpoint, args.n, args.points, args.frames, seed=args.seed, device=args.device)
    try:
        save_animation([Image.fromarray(grid) for grid in grids], args.out, args.fps)
    except OSError as err:
        fail(f"{args.out}: {err.strerror or err}", code=1)
    print(f"wrote {len(grids)} frames ({args.points} points, {args.frames} frames between) to {args.out}")
    return 0
