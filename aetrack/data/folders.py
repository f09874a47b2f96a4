"""Image folders in Keras' `image_dataset_from_directory` layout: class subfolders give the labels
(class names sorted), images directly in the folder are unlabelled, and `train/` and `test/`
subfolders, when there is a `train/`, are the splits. Files sorted; every header is checked up
front. The training split is streamed (`StreamedImages`: decoded per batch while training); the
test split is decoded with PIL into memory.
"""

from __future__ import annotations

import os

import numpy as np

from aetrack.data.raw import Raw
from aetrack.data.spec import image_spec
from aetrack.data.streams import EXTENSIONS_TEXT, StreamedImages
from aetrack.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}  # PIL modes without colour


def image_files(folder: str) -> list[str]:
    """The image files directly in `folder`, sorted (other files are ignored, as Keras does)."""
    # Hidden files (macOS' ._name.png resource forks) are no images.
    return sorted(e.path for e in os.scandir(folder)
                  if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS))


def subfolders(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def has_images(root: str) -> bool:
    """Cheap: any image file in the folder, its class subfolders or its train/ split (no decoding)."""
    splits = [os.path.join(root, "train")] if os.path.isdir(os.path.join(root, "train")) else [root]
    return any(image_files(f) or any(image_files(os.path.join(f, s)) for s in subfolders(f)) for f in splits)


def read_image_folder(root: str, image_size: tuple[int, int] | None = None, color_mode: str = "") -> Raw:
    """The images under `root`: the training split as a `StreamedImages` (nothing decoded), the
    test split as uint8 (n, H, W, C); labels from class subfolders (or None)."""
    where = f"invalid dataset {root!r}"
    if os.path.isdir(os.path.join(root, "train")):
        train = _listing(os.path.join(root, "train"), where)
        test_dir = os.path.join(root, "test")
        test = _listing(test_dir, where) if os.path.isdir(test_dir) else None
    else:
        train, test = _listing(root, where), None
    class_names = train[1]
    if test is not None:
        _check_test_classes(test[1], class_names, bool(train[2]), where)
    headers = {path: _header(path, where) for split in (train, test) if split for path in split[0]}
    size = image_size or _common_size(headers, where)
    mode = color_mode or ("rgb" if any(m not in GRAY_MODES for _, m in headers.values()) else "grayscale")
    spec = image_spec(size[0], size[1], 3 if mode == "rgb" else 1, label_names=tuple(class_names))
    x_train = StreamedImages(tuple(train[0]), spec, where)
    y_train = _labels(train, class_names)
    x_test = None if test is None else StreamedImages(tuple(test[0]), spec, where).pixels()
    y_test = None if test is None else _labels(test, class_names)
    name = os.path.basename(os.path.normpath(root))
    return Raw(name, os.path.abspath(root), spec, x_train, y_train, x_test, y_test, 255.0)


def _listing(folder: str, where: str) -> tuple[list[str], list[str], list[str]]:
    """(files, class names, each file's class) for one split folder; loose files have no class."""
    loose, classes = image_files(folder), subfolders(folder)
    if loose and classes:
        raise DataError(f"{where}: {folder} has both images ({os.path.basename(loose[0])}, ...) and subfolders "
                        f"({classes[0]}, ...); expected class subfolders of images, or images alone")
    if loose:
        return loose, [], []
    files, owners = [], []
    for name in classes:
        found = image_files(os.path.join(folder, name))
        files += found
        owners += [name] * len(found)
    if not files:
        raise DataError(f"{where}: {folder} holds no images; expected {EXTENSIONS_TEXT} files in it or in "
                        f"class subfolders")
    return files, sorted(set(owners)), owners


def _check_test_classes(test_classes: list[str], train_classes: list[str], labelled: bool, where: str) -> None:
    if bool(test_classes) != labelled:
        has, lacks = ("test", "training") if test_classes else ("training", "test")
        raise DataError(f"{where}: the {has} split has class subfolders but the {lacks} split has none; "
                        f"expected both labelled or both unlabelled")
    unknown = sorted(set(test_classes) - set(train_classes))
    if unknown:
        raise DataError(f"{where}: test class {unknown[0]!r} is not a training class; expected test classes "
                        f"among {', '.join(train_classes)}")


def _header(path: str, where: str) -> tuple[tuple[int, int], str]:
    """((height, width), PIL mode) from the header alone; an unreadable file is a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
            return (image.height, image.width), image.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{where}: cannot read image {path} ({_reason(exc)}); expected {EXTENSIONS_TEXT} "
                        f"images") from None


def _common_size(headers: dict, where: str) -> tuple[int, int]:
    sizes = sorted({size for size, _ in headers.values()})
    if len(sizes) > 1:
        shown = ", ".join(f"{h}x{w}" for h, w in sizes[:3]) + (", ..." if len(sizes) > 3 else "")
        raise DataError(f"{where}: images have different sizes ({shown}); expected one size, or set image_size "
                        f"(e.g. --image-size {sizes[0][0]}x{sizes[0][1]}) to resize them")
    return sizes[0]


def _labels(split: tuple[list[str], list[str], list[str]], class_names: list[str]) -> np.ndarray | None:
    if not class_names:
        return None
    index = {name: i for i, name in enumerate(class_names)}
    return np.array([index[owner] for owner in split[2]], np.int64)


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
