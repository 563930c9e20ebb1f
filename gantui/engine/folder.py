"""`--data DIR`: a folder of images, found recursively, centre-cropped and resized, decoded once
into one uint8 array and cached, keyed by the folder's file list, sizes and modification times.

Pillow decodes: torchvision.io measured level with it here (0.86-1.03x its rate, the A/A pair
0.95-1.07, `benchmarks/folder.py`), and Pillow reads WebP and BMP, has the decompression-bomb
limit, and decodes a JPEG much larger than the target at a reduced scale (`draft`). A file
that cannot be used (corrupt, empty, not an image, past Pillow's decompression-bomb limit, a
symlink loop) is skipped and counted, never a crash.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from gantui.datasets import DatasetError
from gantui.run.rundir import atomic_write

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
CACHE_VERSION = 1  # part of the key: a change of decoding makes new caches
Progress = Callable[[int, int], None]  # (decoded, total)
_headers: dict[str, tuple[dict[Path, str], dict[str, int]]] = {}  # listing key -> modes, files skipped so far


@dataclass(frozen=True)
class Folder:
    images: np.ndarray  # uint8 (N, C, S, S)
    skipped: dict[str, int]  # reason -> files
    cached: bool  # read from the cache, not decoded now


def cache_dir() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("gantui") / "folders"


def find_images(root: Path) -> list[Path]:
    """Image files under `root`, sorted; symlinked folders are not followed (no loops)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        found += [Path(folder) / f for f in sorted(files) if f.lower().endswith(EXTENSIONS)]
    return found


def listing_key(root: Path, files: list[Path], size: int) -> tuple[str, list[Path], Counter]:
    """The cache key of the folder as it is now, the files that can be read, and those that cannot."""
    digest = hashlib.sha256(f"gantui-folder {CACHE_VERSION} {size}\n".encode())
    readable, skipped = [], Counter()
    for path in files:
        try:
            stat = path.stat()  # follows a symlink: a loop or a dangling link raises
        except OSError:
            skipped["unreadable (a broken or looping link?)"] += 1
            continue
        if stat.st_size == 0:
            skipped["empty"] += 1
            continue
        readable.append(path)
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32], readable, skipped


def decode(path: Path, size: int, mode: str) -> np.ndarray:
    """One image, centre-cropped to a square and resized to `size`, as uint8 (C, S, S)."""
    with Image.open(path) as image:
        if image.format == "JPEG":
            image.draft(mode, (size, size))  # decode at 1/2, 1/4 or 1/8 scale when that still covers `size`
        image = ImageOps.exif_transpose(image).convert(mode)
        w, h = image.size
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        image = image.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
        array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def available_memory() -> int:
    """Bytes of host memory free for the dataset (MemAvailable; all of it where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(root: Path, count: int, shape: tuple[int, int, int], free: int, where: str) -> None:
    need = count * int(np.prod(shape))
    if need > free:
        c, s, _ = shape
        smaller = [x for x in (32, 64) if x < s]
        hint = f"try --image-size {smaller[-1]}" if smaller else "use fewer images"
        raise DatasetError(f"--data {root}: {count:,} images at {s}x{s}x{c} take {need / 1e9:.1f} GB, more than the "
                           f"{free / 1e9:.1f} GB free on {where}; {hint}")


@dataclass
class Scan:
    """A folder looked over, nothing decoded yet: what `load` needs, and what the CLI can refuse
    before a run starts."""

    root: Path
    size: int
    files: list[Path]  # the files to decode (Pillow knows their headers)
    skipped: Counter  # reason -> files, found so far
    mode: str  # "L" when every image is grey, else "RGB"
    cache: Path
    cached: bool  # the cache holds this folder at this size

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3


def scan(folder: str | Path, size: int, channels: int | None = None,
         device_free: tuple[int, str] | None = None) -> Scan:
    """The folder's image files, their headers read unless the cache has them; DatasetError for a
    folder without usable images or one too big for memory (`device_free`: the training device's
    free bytes and its name, checked too)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"--data {root}: not a folder")
    files = find_images(root)
    key, readable, skipped = listing_key(root, files, size)
    if not readable:
        raise DatasetError(f"--data {root}: no images found ({', '.join(EXTENSIONS)}, searched recursively"
                           + (f"; {sum(skipped.values())} unreadable or empty" if skipped else "") + ")")
    for free, where in [(available_memory(), "this machine"), *([device_free] if device_free else [])]:
        check_fits(root, len(readable), (channels or 3, size, size), free, where)
    cache = cache_dir() / f"{key}.npy"
    try:
        meta = json.loads(cache.with_suffix(".json").read_text())
        if cache.exists():
            return Scan(root, size, readable, skipped + Counter(meta["skipped"]), meta["mode"], cache, cached=True)
    except (OSError, ValueError, KeyError):
        pass  # no cache, or a damaged one: decoded again
    if key not in _headers:  # read once a process: the CLI scans before the run, the trainer again
        _headers[key] = read_headers(readable, skipped), dict(skipped)
    modes, known = _headers[key]
    skipped = Counter(known)
    if not modes:
        raise DatasetError(f"--data {root}: none of its {len(files)} image files could be decoded "
                           f"({', '.join(f'{n} {why}' for why, n in skipped.items())})")
    mode = "L" if all(m in GREY_MODES for m in modes.values()) else "RGB"
    return Scan(root, size, list(modes), skipped, mode, cache, cached=False)


def read_headers(files: list[Path], skipped: Counter) -> dict[Path, str]:
    """Each file's mode, from its header alone; those Pillow does not know, or would refuse as a
    decompression bomb, counted in `skipped`."""
    modes = {}
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    modes[path] = image.mode
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            skipped["past the decompression-bomb limit"] += 1
        except Exception:  # UnidentifiedImageError, a truncated header, ...
            skipped["not an image"] += 1
    return modes


def load(found: Scan, channels: int | None = None, progress: Progress | None = None) -> Folder:
    """The scanned folder's images (`channels`: 1, 3, or None for the images' own), from the cache
    or decoded now and cached."""
    if found.cached:
        try:
            return Folder(convert(np.load(found.cache), channels), dict(found.skipped), cached=True)
        except (OSError, ValueError):  # a damaged cache: dropped, and the folder decoded again
            found.cache.unlink(missing_ok=True)
            found.cache.with_suffix(".json").unlink(missing_ok=True)
            return load(scan(found.root, found.size, channels), channels, progress)
    images, bad = decode_all(found.files, found.size, found.mode, progress)
    skipped = found.skipped + bad
    if not len(images):
        raise DatasetError(f"--data {found.root}: none of its image files could be decoded "
                           f"({', '.join(f'{n} {why}' for why, n in skipped.items())})")
    listing = {"unreadable (a broken or looping link?)", "empty"}  # found again at every scan
    write_cache(found.cache, images, {"root": str(found.root), "count": len(images), "mode": found.mode,
                                      "skipped": {k: v for k, v in skipped.items() if k not in listing}})
    return Folder(convert(images, channels), dict(skipped), cached=False)


def summary(root: str | Path, found: Folder) -> str:
    n, c, s, _ = found.images.shape
    how = "from the cache" if found.cached else "decoded and cached"
    skipped = (f"; skipped {sum(found.skipped.values())} ({', '.join(f'{k}: {v}' for k, v in found.skipped.items())})"
               if found.skipped else "")
    return f"{root}: {n:,} images, {s}x{s} {'RGB' if c == 3 else 'grey'}, {how}{skipped}"


def decode_all(files: list[Path], size: int, mode: str, progress: Progress | None) -> tuple[np.ndarray, Counter]:
    """Every file decoded in a thread pool (Pillow releases the GIL while it decodes); an exception
    from `progress` stops it within a few files."""
    skipped: Counter = Counter()
    done = 0

    def one(path: Path) -> np.ndarray | None:
        try:
            return decode(path, size, mode)
        except Exception:  # a truncated body, a bad chunk: found only when decoding
            return None

    arrays = []
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    try:
        for array in pool.map(one, files):
            done += 1
            if array is None:
                skipped["corrupt"] += 1
            else:
                arrays.append(array)
            if progress and (done % 32 == 0 or done == len(files)):  # a stop is seen within 32 files
                progress(done, len(files))  # may raise to stop (a signal): the files not begun are dropped
    finally:
        pool.shutdown(cancel_futures=True)
    channels = 1 if mode == "L" else 3
    return (np.stack(arrays) if arrays else np.zeros((0, channels, size, size), np.uint8)), skipped


def convert(images: np.ndarray, channels: int | None) -> np.ndarray:
    """Grey to RGB (repeated) or RGB to grey (ITU-R 601-2 luma, as Pillow's "L"), when asked."""
    if channels is None or images.shape[1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=1)
    luma = images[:, 0] * 0.299 + images[:, 1] * 0.587 + images[:, 2] * 0.114
    return np.rint(luma)[:, None].astype(np.uint8)


def write_cache(path: Path, images: np.ndarray, meta: dict) -> None:
    """The array, then its description (whose presence says the array is whole); a failure to
    write (a read-only or full cache) costs only the next start's decode."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.save(f, images))
        atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(meta).encode()))
    except OSError:
        pass
