"""Before a run starts: its dataset's files fetched, or its folder of images decoded (with a
progress line on stderr) and cached. Errors are one-line DatasetErrors, before anything trains."""
from __future__ import annotations

import sys
import time

from gantui.config import Config
from gantui.datasets import DEFAULT_IMAGE_SIZE, FOLDER


class ProgressLine:
    """"decoding 1,234/10,000 images (2,345/s)": rewritten in place on a terminal, else a line at
    each tenth."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream, self.start, self.tenth = stream, time.perf_counter(), -1
        self.tty = stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        text = f"decoding {done:,}/{total:,} images ({rate:,.0f}/s)"
        if self.tty:
            self.stream.write(f"\r{text}" + ("\n" if done == total else ""))
        elif (tenth := done * 10 // total) != self.tenth:
            self.tenth = tenth
            self.stream.write(text + "\n")
        self.stream.flush()


def prepare_data(config: Config, device) -> None:
    """Fetch a torchvision dataset, or decode a folder and fill in its image size and channels."""
    from gantui.engine.data import fetch

    if config.dataset != FOLDER:
        fetch(config.dataset, config.data_root)
        return
    import torch

    from gantui.engine.folder import load

    config.image_size = config.image_size or DEFAULT_IMAGE_SIZE
    free = (torch.cuda.mem_get_info(device)[0], str(device)) if device.type == "cuda" else None
    found = load(config.data, config.image_size, config.channels, progress=ProgressLine(), device_free=free)
    config.channels = found.images.shape[1]
    n, c, s, _ = found.images.shape
    how = "from the cache" if found.cached else "decoded and cached"
    skipped = f"; skipped {sum(found.skipped.values())} ({', '.join(f'{k}: {v}' for k, v in found.skipped.items())})"
    print(f"{config.data}: {n:,} images, {s}x{s} {'RGB' if c == 3 else 'grey'}, {how}"
          + (skipped if found.skipped else ""), file=sys.stderr)
