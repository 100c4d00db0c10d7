"""Image input handling: validation, lazy loading, colour conversion and transforms."""

from __future__ import annotations

import os
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = frozenset(ext.lower() for ext in Image.registered_extensions())

_INPUT_HELP = (
    "Pass images as a list, array or pandas Series of file paths, PIL images or uint8 arrays of shape "
    "(H, W) or (H, W, C), or as one array of shape (N, H, W, C)."
)


def load_image_folder(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Read the usual ``root/<class>/<image file>`` layout.

    Parameters
    ----------
    root : str or path-like
        Folder with one sub-folder per class.

    Returns
    -------
    paths : list of str
        Image file paths, sorted by class then name.
    labels : list of str
        The class (sub-folder name) of each path.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for label in ["cat", "dog"]:
    ...     (root / label).mkdir()
    ...     Image.new("RGB", (8, 8)).save(root / label / "a.png")
    >>> paths, labels = load_image_folder(root)
    >>> labels
    ['cat', 'dog']
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"load_image_folder: {str(root)!r} is not a directory.")
    paths, labels = [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(class_dir.iterdir()):
            if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(str(file))
                labels.append(class_dir.name)
    if not paths:
        raise ValueError(f"load_image_folder: no image files found in sub-folders of {str(root)!r}.")
    return paths, labels


def check_images(X: Any) -> list:
    """Validate image input and return it as a list of paths, PIL images or arrays (nothing is decoded)."""
    if isinstance(X, (str, os.PathLike, Image.Image)):
        raise TypeError(f"X must be a collection of images, not a single {type(X).__name__}. {_INPUT_HELP}")
    if isinstance(X, (AbstractSet, Mapping)):
        raise TypeError(
            f"X is a {type(X).__name__}: its order is not the order of y, so images and targets would not line up. "
            f"{_INPUT_HELP}"
        )
    if hasattr(X, "columns") and getattr(X, "ndim", 1) == 2:  # a pandas DataFrame: iterating it gives column names
        if X.shape[1] != 1:
            raise ValueError(
                f"Image input must be one column, got a DataFrame with {X.shape[1]} columns "
                f"{list(X.columns)[:5]}; select the column of images, e.g. X['path']. {_INPUT_HELP}"
            )
        X = X.iloc[:, 0]
    if isinstance(X, np.ndarray) and X.dtype != object and X.dtype.kind not in "US":
        if X.ndim not in (3, 4) or (X.ndim == 4 and X.shape[-1] not in (1, 3, 4)):
            raise ValueError(f"An image array must have shape (N, H, W) or (N, H, W, C), got {X.shape}. {_INPUT_HELP}")
        if 0 in X.shape[1:3]:
            raise ValueError(f"The image array of shape {X.shape} has no pixels: each image needs a height and width.")
        _check_pixel_values(X, "Image array")
        items = list(X)
    elif hasattr(X, "__len__") and hasattr(X, "__getitem__") or hasattr(X, "__iter__"):
        items = list(X.tolist() if isinstance(X, np.ndarray) and X.dtype.kind in "US" else X)
    else:
        raise TypeError(f"X of type {type(X).__name__} is not a collection of images. {_INPUT_HELP}")
    if not items:
        raise ValueError("X is empty: fit and predict need at least one image.")
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            if not os.path.isfile(item):
                raise ValueError(f"Image {i}: file not found: {os.fspath(item)!r}. Check the path.")
            _check_image_file(item, i)
        elif isinstance(item, np.ndarray):
            if item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[-1] not in (1, 3, 4)):
                raise ValueError(f"Image {i}: array of shape {item.shape} is not (H, W) or (H, W, C). {_INPUT_HELP}")
            if 0 in item.shape[:2]:
                raise ValueError(f"Image {i}: array of shape {item.shape} has no pixels; remove it.")
            if not isinstance(X, np.ndarray) or X.dtype == object:
                _check_pixel_values(item, f"Image {i}")
        elif isinstance(item, Image.Image) and 0 in item.size:
            raise ValueError(f"Image {i}: PIL image of size {item.size} has no pixels; remove it.")
        elif not isinstance(item, Image.Image):
            raise TypeError(f"Image {i}: unsupported type {type(item).__name__}. {_INPUT_HELP}")
    return items


def _check_pixel_values(array: np.ndarray, where: str) -> None:
    """Pixel values must be finite and in a documented range: [0, 1] or [0, 255] for floats, [0, 255] for
    integers other than uint8 and uint16 (clipping anything else would silently change the image)."""
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(f"{where} contains NaN or infinity; fix or remove it.")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{where}: float pixel values must lie in [0, 1] or [0, 255], got values from {low:g} to {high:g}. "
                "Pass raw pixels, not normalised ones: sktransfer resizes and normalises images itself."
            )
    elif array.dtype.kind in "iu" and array.dtype not in (np.uint8, np.uint16):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{where}: integer pixel values must lie in [0, 255], got values from {low} to {high}; convert "
                "to uint8 (pass 16-bit images as uint16)."
            )


def _check_image_file(path: str | os.PathLike, index: int) -> None:
    """Cheap upfront check (header, and structure where PIL can verify it) so bad files fail before training."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as err:
        raise ValueError(
            f"Cannot read image {index} ({os.fspath(path)!r}): {err}. It is not a valid image file; fix or remove it."
        ) from err


def _array_to_pil(array: np.ndarray) -> Image.Image:
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError("float image contains NaN or infinity")
        # Documented rule: floats with max <= 1 are in [0, 1]; otherwise in [0, 255].
        array = array * 255.0 if array.max() <= 1.0 else array
        array = np.clip(array, 0, 255).round().astype(np.uint8)
    elif array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(np.ascontiguousarray(array))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode (16-bit, CMYK, RGBA, LA, palette) to RGB; alpha is composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def load_image(item: Any, index: int) -> Image.Image:
    """Load one item as an RGB PIL image; errors name the item's index (and path)."""
    try:
        if isinstance(item, (str, os.PathLike)):
            with Image.open(item) as image:
                image.seek(0)
                image.load()
                return to_rgb(image)
        if isinstance(item, np.ndarray):
            return to_rgb(_array_to_pil(item))
        return to_rgb(item)
    except Exception as err:
        where = f" ({os.fspath(item)!r})" if isinstance(item, (str, os.PathLike)) else ""
        raise ValueError(f"Cannot read image {index}{where}: {err}. Fix or remove this image.") from err


def build_transform(data_config: dict, augment: Any = None) -> Callable[[Image.Image], torch.Tensor]:
    """Eval transform from the backbone's data config; ``augment`` adds training-time augmentation.

    The usual timm eval pipeline (resize the shorter side, centre crop, to tensor, normalise) runs as an
    :class:`EvalTransform`; the augmentations end in a table lookup instead of three tensor ops. Both give
    what torchvision gives (see :class:`EvalTransform` for the tolerance) without spending torch's threads
    on one image at a time.
    """
    import timm.data
    from torchvision.transforms import v2

    eval_tf = EvalTransform.replacing(timm.data.create_transform(**data_config, is_training=False))
    if augment is None:
        return eval_tf
    size = tuple(data_config["input_size"][1:])
    # Equal to v2.ToImage, v2.ToDtype(float32, scale=True) (which multiplies by 1/255) and v2.Normalize.
    normalize = [NormalizeTable(data_config["mean"], data_config["std"], scale="multiply")]
    if augment == "light":
        return v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip(), *normalize,
        ])
    if augment == "standard":
        return v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.25, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(0.3, 0.3, 0.3),
            *normalize,
        ])
    return v2.Compose([augment, eval_tf])


class NormalizeTable:
    """An RGB PIL image to a normalised float32 ``(3, H, W)`` tensor through one 256-entry table per channel.

    Bitwise equal to ``ToTensor`` then ``Normalize(mean, std)`` (``scale="divide"``), or to torchvision v2's
    ``ToImage``, ``ToDtype(float32, scale=True)`` and ``Normalize`` (``scale="multiply"``): the table holds
    the same float32 operations on each of the 256 values. Unlike those tensor operations it runs on one
    core: per-image work spread over torch's threads costs more in synchronisation than it saves.
    """

    def __init__(self, mean, std, scale: str = "divide"):
        values = np.arange(256, dtype=np.float32)
        values = values / np.float32(255) if scale == "divide" else values * np.float32(1.0 / 255)
        mean = np.asarray(mean, dtype=np.float32)[:, None]
        std = np.asarray(std, dtype=np.float32)[:, None]
        self.table = (values[None, :] - mean) / std

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            raise TypeError(f"NormalizeTable needs an RGB PIL image, got {image!r}.")
        planes = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))
        out = np.empty(planes.shape, dtype=np.float32)
        for channel, plane in enumerate(planes):
            np.take(self.table[channel], plane, out=out[channel])
        return torch.from_numpy(out)


class EvalTransform:
    """Resize the shorter side to ``size``, centre crop ``crop`` and normalise: timm's eval transform, cheaper.

    Instead of resizing the whole image and cropping, only the crop's source region is resampled, in
    PIL's own two passes (horizontal, then vertical); pixels differ from resize-then-crop by at most 1/255,
    in about 0.01 % of the values (measured on hymenoptera). Normalisation is :class:`NormalizeTable`
    (bitwise equal). Anything but an RGB PIL image goes to ``fallback``, the transform this one replaces.
    """

    def __init__(self, size: int, crop: tuple[int, int], resample: int, mean, std, fallback: Callable):
        self.size, self.crop, self.resample, self.fallback = size, crop, resample, fallback
        self.normalize = NormalizeTable(mean, std)

    @classmethod
    def replacing(cls, transform: Callable) -> Callable:
        """An :class:`EvalTransform` equivalent to torchvision's ``Compose([Resize(int), CenterCrop,
        ToTensor, Normalize])`` (as timm builds it for centre crops), or ``transform`` itself otherwise."""
        from torchvision import transforms as T

        steps = list(getattr(transform, "transforms", []))
        if len(steps) != 4:
            return transform
        resize, crop, to_tensor, normalize = steps
        size = resize.size if isinstance(resize, T.Resize) else None
        size = size[0] if isinstance(size, (list, tuple)) and len(size) == 1 else size
        resample = {T.InterpolationMode.BILINEAR: Image.BILINEAR, T.InterpolationMode.BICUBIC: Image.BICUBIC}
        if not (isinstance(size, int) and resize.max_size is None and resize.interpolation in resample
                and isinstance(crop, T.CenterCrop) and size >= max(crop.size)
                and type(to_tensor).__name__ in ("ToTensor", "MaybeToTensor")
                and isinstance(normalize, T.Normalize) and not normalize.inplace):
            return transform
        mean, std = (torch.as_tensor(v, dtype=torch.float32).numpy() for v in (normalize.mean, normalize.std))
        return cls(size, tuple(crop.size), resample[resize.interpolation], mean, std, fallback=transform)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            return self.fallback(image)
        return self.normalize(self.resize_crop(image))

    def resize_crop(self, image: Image.Image) -> Image.Image:
        """The resized and centre-cropped image (torchvision's output size and crop offsets)."""
        width, height = image.size
        long = int(self.size * max(width, height) / min(width, height))
        new_w, new_h = (self.size, long) if width <= height else (long, self.size)
        crop_h, crop_w = self.crop
        top, left = int(round((new_h - crop_h) / 2.0)), int(round((new_w - crop_w) / 2.0))
        scale_x, scale_y = width / new_w, height / new_h
        if new_w == width:
            image = image.crop((left, 0, left + crop_w, height))
        else:
            box = (left * scale_x, 0, (left + crop_w) * scale_x, height)
            image = image.resize((crop_w, height), self.resample, box=box)
        if new_h == height:
            return image.crop((0, top, crop_w, top + crop_h))
        return image.resize((crop_w, crop_h), self.resample, box=(0, top * scale_y, crop_w, (top + crop_h) * scale_y))


class ImageDataset(torch.utils.data.Dataset):
    """Loads images lazily, one item at a time (so DataLoader workers decode in parallel).

    Without DataLoader workers, a batch whose transform is deterministic (an :class:`EvalTransform`) is
    decoded and preprocessed by as many threads as torch computes with: PIL and numpy release the GIL.
    Random augmentations stay in one thread, in order, so that a seeded fit draws the same crops.
    """

    def __init__(self, items: list, transform: Callable, y=None, sample_weight=None):
        self.items, self.transform, self.y, self.sample_weight = items, transform, y, sample_weight

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        x = {"pixel_values": self.transform(load_image(self.items[i], i))}
        if self.sample_weight is not None:
            x["sample_weight"] = torch.as_tensor(self.sample_weight[i], dtype=torch.float32)
        return x, (self.y[i] if self.y is not None else 0)

    def __getitems__(self, indices: list[int]) -> list:
        threads = torch.get_num_threads()
        if (len(indices) < 2 or threads < 2 or not isinstance(self.transform, EvalTransform)
                or torch.utils.data.get_worker_info() is not None):
            return [self[i] for i in indices]
        return list(_decoding_pool(threads).map(self.__getitem__, indices))


_POOL: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _decoding_pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``threads`` decoding threads (a forked child builds its own)."""
    key = (os.getpid(), threads)
    if key not in _POOL:
        for (pid, _), pool in _POOL.items():
            if pid == key[0]:  # a forked child only forgets its parent's pool: it has none of its threads
                pool.shutdown(wait=False)
        _POOL.clear()
        _POOL[key] = ThreadPoolExecutor(threads, thread_name_prefix="sktransfer-decode")
    return _POOL[key]
