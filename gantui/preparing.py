"""Before a run starts: its dataset's files fetched, or its folder of images looked over (the
decoding is the trainer's, with progress events). Errors are one-line DatasetErrors, before
anything trains."""
from __future__ import annotations

from dataclasses import replace

from gantui.config import Config
from gantui.datasets import DEFAULT_IMAGE_SIZE, FOLDER


def prepare_data(config: Config, device) -> Config:
    """Fetch a torchvision dataset, or scan a folder: the config with its image size and channels."""
    from gantui.engine.data import fetch

    if config.dataset != FOLDER:
        fetch(config.dataset, config.data_root)
        return config
    import torch

    from gantui.engine.folder import scan

    size = config.image_size or DEFAULT_IMAGE_SIZE
    free = (torch.cuda.mem_get_info(device)[0], str(device)) if device.type == "cuda" else None
    found = scan(config.data, size, config.channels, free)  # its refusals, before anything starts
    return replace(config, image_size=size, channels=config.channels or found.channels)
