"""`gantui sample`: images from a checkpoint, as a PNG grid or a uint8 array."""
from __future__ import annotations

from pathlib import Path

from gantui.cli.parser import Parser, fail


def sample_parser() -> Parser:
    p = Parser(prog="gantui sample", description="Generate images from a checkpoint.")
    p.add_argument("checkpoint", help="checkpoint file or run directory")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", required=True, help="output file: .png writes a grid, .npy a uint8 (N, 28, 28) array")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--device", default="cpu", help="device to generate on (default cpu)")
    p.add_argument("--digit", type=int, help="a conditional run's digit to draw (default: 0-9 in turn)")
    return p


def sample(argv: list[str]) -> int:
    args = sample_parser().parse_args(argv)
    if args.n <= 0:
        fail(f"--n must be a positive integer, got {args.n}")
    if args.digit is not None and not 0 <= args.digit <= 9:
        fail(f"--digit must be from 0 to 9, got {args.digit}")
    out = Path(args.out)
    if out.suffix not in (".png", ".npy"):
        fail(f"--out {out}: use a .png or .npy file name")
    from gantui.engine.sample import generate, write_samples

    images, _ = generate(args.checkpoint, args.n, seed=args.seed, device=args.device, digit=args.digit)
    try:
        write_samples(images, out)
    except OSError as err:
        fail(f"{out}: {err.strerror or err}", code=1)
    print(f"wrote {args.n} images to {out}")
    return 0
