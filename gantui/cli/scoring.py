"""`gantui eval` (a checkpoint's quality figures) and `gantui evaluator fit` (the classifier that
scores a labelled dataset); torch is imported when they run."""
from __future__ import annotations

from gantui.cli.parser import Parser, fail
from gantui.datasets import DATASETS, evaluation_off_reason


def eval_parser() -> Parser:
    p = Parser(prog="gantui eval", description="Quality figures for a checkpoint's samples (or for real test images).")
    p.add_argument("checkpoint", nargs="?", help="checkpoint file or run directory")
    p.add_argument("--real", action="store_true", help="score real MNIST test images instead: the reference floor")
    p.add_argument("--n", type=int, default=10000, help="number of images (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--device", default="cpu", help="device (default cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def evaluate_command(argv: list[str]) -> int:
    args = eval_parser().parse_args(argv)
    if args.n <= 1:
        fail(f"--n must be at least 2, got {args.n}")
    if bool(args.checkpoint) == args.real:
        fail("give a CHECKPOINT or --real (one of them)")
    import json

    import numpy as np
    import torch

    from gantui.engine.checkpoint import load_checkpoint
    from gantui.engine.data import from_uint8, load_mnist_arrays, normalise
    from gantui.engine.device import resolve_device
    from gantui.engine.sample import generate
    from gantui.evaluation.metrics import evaluate

    device = str(resolve_device(args.device))
    dataset = "mnist"
    if args.real:
        test = load_mnist_arrays("test")[0]
        if args.n > len(test):
            fail(f"--n {args.n}: the MNIST test set has {len(test)} images")
        images, labels = test[np.random.default_rng(args.seed).permutation(len(test))[:args.n]], None
    else:
        state = load_checkpoint(args.checkpoint)  # once: generate takes it
        dataset = state["config"].get("dataset", "mnist")
        if off := evaluation_off_reason(dataset):
            fail(f"{args.checkpoint}: cannot score it: {off}")
        images, labels = generate(args.checkpoint, args.n, seed=args.seed, device=device, state=state)
    figures = evaluate(normalise(from_uint8(images)), device, neighbours=True, dataset=dataset,
                       labels=torch.from_numpy(labels) if labels is not None else None)
    source = "real MNIST test images" if args.real else args.checkpoint
    if args.json:
        print(json.dumps({"source": source, **figures}))
        return 0
    print(f"{source}: {args.n} images")
    print(f"  FID (classifier)  {figures['fid']:.2f}  (N={figures['fid_n']})")
    print(f"  classes >= 1%     {figures['classes']}/{len(figures['hist'])}   KL from {dataset} {figures['kl']:.4f}")
    print(f"  confidence        {figures['confidence']:.3f}   score {figures['score']:.2f} (of 10)")
    print(f"  density           {figures['density']:.3f}   coverage {figures['coverage']:.3f}")
    if "cond_acc" in figures:
        print(f"  conditioning      {figures['cond_acc']:.1%} of samples read as the class asked for")
    print("  class shares      " + " ".join(f"{d}:{share:.0%}" for d, share in enumerate(figures["hist"])))
    return 0


def evaluator(argv: list[str]) -> int:
    """`gantui evaluator fit --dataset NAME`: the classifier that scores a labelled dataset."""
    p = Parser(prog="gantui evaluator", description="Fit the small classifier that scores a labelled dataset's "
                                                   "samples (FID, classes, KL, coverage), offline from then on.")
    p.add_argument("action", choices=["fit"])
    p.add_argument("--dataset", required=True, help=f"one of: {', '.join(n for n in DATASETS if n != 'mnist')}")
    p.add_argument("--data-root", metavar="DIR", help="where the dataset's files are (default: the user cache dir)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = p.parse_args(argv)
    if args.dataset == "mnist":
        fail("mnist's evaluator ships with gantui (scripts/train_classifier.py rebuilds it)")
    if args.dataset not in DATASETS:
        fail(f"unknown dataset {args.dataset!r} (choose from: {', '.join(n for n in DATASETS if n != 'mnist')}; "
             "a folder of images has no labels to fit on)")
    if args.epochs <= 0:
        fail(f"--epochs must be a positive integer, got {args.epochs}")
    import torch

    from gantui.datasets import evaluator_dir
    from gantui.engine.data import fetch, load_dataset
    from gantui.evaluation.fit import encode, fit, write_evaluator

    data, cpu = DATASETS[args.dataset], torch.device("cpu")
    fetch(args.dataset, args.data_root)
    train, test = (load_dataset(data, cpu, args.data_root, train=split) for split in (True, False))
    print(f"fitting the {args.dataset} evaluator on {len(train[0]):,} training images, {args.epochs} epochs")
    model, stats = fit(train, test, len(data.classes or ()), args.epochs, args.seed)
    folder = evaluator_dir(args.dataset)
    try:
        digests = write_evaluator(folder, encode(model, stats))
    except OSError as err:
        fail(f"{folder}: {err.strerror or err}", code=1)
    print(f"test accuracy {stats['test_accuracy']:.4f}; wrote {folder} "
          f"({', '.join(f'{name} sha256 {digest[:12]}' for name, digest in digests.items())})")
    return 0
