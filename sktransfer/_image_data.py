"""Image input handling: validation, lazy loading, colour conversion and transforms."""

from __future__ import annotations

import os
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
    if isinstance(X, np.ndarray) and X.dtype != object and X.dtype.kind not in "US":
        if X.ndim not in (3, 4) or (X.ndim == 4 and X.shape[-1] not in (1, 3, 4)):
            raise ValueError(f"An image array must have shape (N, H, W) or (N, H, W, C), got {X.shape}. {_INPUT_HELP}")
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
        elif not isinstance(item, Image.Image):
            raise TypeError(f"Image {i}: unsupported type {type(item).__name__}. {_INPUT_HELP}")
    return items


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
    """Eval transform from the backbone's data config; ``augment`` adds training-time augmentation."""
    import timm.data
    from torchvision.transforms import v2

    eval_tf = timm.data.create_transform(**data_config, is_training=False)
    if augment is None:
        return eval_tf
    size = tuple(data_config["input_size"][1:])
    normalize = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(data_config["mean"], data_config["std"])]
    if augment == "light":
        return v2.Compose([v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True), v2.RandomHorizontalFlip(), *normalize])
    if augment == "standard":
        return v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.25, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(0.3, 0.3, 0.3),
            *normalize,
        ])
    return v2.Compose([augment, eval_tf])


class ImageDataset(torch.utils.data.Dataset):
    """Loads images lazily, one item at a time (so DataLoader workers decode in parallel)."""

    def __init__(self, items: list, transform: Callable, y=None, sample_weight=None):
        self.items, self.transform, self.y, self.sample_weight = items, transform, y, sample_weight

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        x = {"pixel_values": self.transform(load_image(self.items[i], i))}
        if self.sample_weight is not None:
            x["sample_weight"] = torch.as_tensor(self.sample_weight[i], dtype=torch.float32)
        return x, (self.y[i] if self.y is not None else 0)

