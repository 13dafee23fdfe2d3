"""Decoding encoded images into one uint8 array the training loop can index: shape (N, 3, S, S), RGB.

Every image is decoded once. Images are converted to RGB (transparency composited onto white, EXIF rotation
applied, 16-bit scaled to 8-bit) and brought to S x S: resized directly when the side is already near S (small
images, CIFAR stem), otherwise the shorter side is resized to S and the centre cropped. A sample that cannot be
decoded gets an error string and a black image that is never trained on.

The array lives in RAM while it fits `memory_budget_bytes`; beyond that it is a memory-mapped file in the output
folder, so resident memory does not grow with the number of decoded images.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from labelscrub.sources import LabeledImages

# PIL's own default; pixel counts above it are refused instead of decoded (decompression bombs).
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# Images read ahead of the decoder threads; bounds the encoded bytes held in memory at once.
DECODE_CHUNK = 512
# PIL releases the GIL while decoding, so a few threads keep the cores busy without process start-up costs.
DECODE_THREADS = 4
# How many images are inspected to find the typical side.
SIDE_SAMPLE = 64


def typical_side(images: LabeledImages, sample: int = SIDE_SAMPLE) -> int:
    """Median of the longer side over the first `sample` readable images (header only, nothing decoded)."""
    sides: list[int] = []
    stream = images.iter_encoded()
    try:
        for _, data, error in stream:
            if error is None and data is not None:
                try:
                    with warnings.catch_warnings():  # a bomb is refused (and reported) by decode_all
                        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                        with Image.open(io.BytesIO(data)) as image:
                            sides.append(max(image.size))
                except Exception:  # a broken image does not vote; decode_all reports it
                    continue
            if len(sides) >= sample:
                break
    finally:
        stream.close()
    return int(np.median(sides)) if sides else 32


def decode_one(data: bytes, size: int) -> np.ndarray:
    """One encoded image -> (3, size, size) uint8. Raises on anything PIL cannot decode."""
    rgb = open_rgb(data)
    if rgb.size != (size, size):
        rgb = _fit(rgb, size)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def open_rgb(data: bytes) -> Image.Image:
    """One encoded image, upright, as RGB at its own size. Raises on anything PIL cannot decode and on images over
    MAX_IMAGE_PIXELS (decompression bombs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(f"{width}x{height} pixels is over the {MAX_IMAGE_PIXELS:,}-pixel limit")
            image.seek(0)  # first frame of animations
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8), mode="L")
    # Palette, grey and RGB PNGs/GIFs mark a transparent colour in `info` rather than an alpha band.
    if image.mode in ("P", "L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _fit(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    if max(width, height) <= 2 * size:
        # Near the target size: a plain resize keeps the whole image (small images, CIFAR stem).
        return image.resize((size, size), Image.BILINEAR)
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def allocate(n_images: int, size: int, memory_budget_bytes: int, spill_path: Path | None) -> np.ndarray:
    """Zeroed (n, 3, size, size) uint8 storage: in RAM within the budget, else memory-mapped at `spill_path`."""
    shape = (n_images, 3, size, size)
    if spill_path is None or math.prod(shape) <= memory_budget_bytes:
        return np.zeros(shape, dtype=np.uint8)
    return np.lib.format.open_memmap(spill_path, mode="w+", dtype=np.uint8, shape=shape)


def decode_all(images: LabeledImages, size: int, *, memory_budget_bytes: int, spill_path: Path | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, list[str | None]]:
    """Decode every sample of `images`. Returns the pixel array and one error string (or None) per sample,
    combining read-time errors with decoding failures.

    `on_progress(done, total)` hears how many samples are read and decoded (or found unreadable) so far: 0 first,
    then after each image, `total` last."""
    report = on_progress or (lambda done, total: None)
    pixels = allocate(len(images), size, memory_budget_bytes, spill_path)
    errors = list(images.errors)
    done = 0
    report(done, len(images))
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        for chunk in _chunks(images.iter_encoded(), DECODE_CHUNK):
            readable = [(index, data) for index, data, error in chunk if error is None and data is not None]
            for index, data, error in chunk:
                if error is not None or data is None:
                    errors[index] = errors[index] or error or "image is missing"
            if len(readable) < len(chunk):
                done += len(chunk) - len(readable)
                report(done, len(images))
            decoded = pool.map(lambda item: _try_decode(item[1], size), readable)
            for (index, _), (array, error) in zip(readable, decoded):
                if error is None:
                    pixels[index] = array
                else:
                    errors[index] = errors[index] or error
                done += 1
                report(done, len(images))
    return pixels, errors


def _try_decode(data: bytes, size: int) -> tuple[np.ndarray | None, str | None]:
    try:
        return decode_one(data, size), None
    except Image.DecompressionBombWarning as error:
        return None, f"refused, image too large: {error}"
    except Exception as error:  # any decoder failure quarantines the one sample, never the run
        return None, f"cannot decode image: {type(error).__name__}: {error}"


def _chunks(stream: Iterable, size: int) -> Iterable[list]:
    chunk: list = []
    for item in stream:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
