"""Images: the solar cells (ELPV), a learner's own folder of images, and preprocessing."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import train_test_split

from course_utils.assets import ASSETS, asset_path, shown
from course_utils.data import cache_key, cached_array
from course_utils.models import IMAGENET_MEAN, IMAGENET_STD

ELPV_CLASSES = ["functional", "defective"]
PAPER_TEST_SIZE = 656  # Deitsch et al. 2019: 25% of the 2,624 cells, stratified


class ImageInputError(ValueError):
    """A path, folder or image the course cannot use; the message says how to fix it."""

    def _render_traceback_(self) -> list[str]:
        """In Jupyter, show the message alone, not the call stack."""
        return [f"ImageInputError: {self}"]


@dataclass
class SolarCells:
    """The ELPV cells: images, defect probabilities, defective labels (p >= 0.5) and cell types."""

    images: np.ndarray  # (2624, 300, 300) uint8, grey, read-only (memory-mapped)
    defect_prob: np.ndarray  # 0, 1/3, 2/3 or 1, as rated by experts
    labels: np.ndarray  # 1 = defective (p >= 0.5), 0 = functional
    cell_type: np.ndarray  # "mono" or "poly"


def load_elpv() -> SolarCells:
    """The 2,624 solar-cell images from the verified asset, decoded once and cached under data/.

    Introduced in ``02_what_networks_learn.ipynb``.
    """
    root = asset_path("elpv")
    rows = _elpv_rows(root)
    # Memory-mapped (read-only): 236 MB of pixels that the operating system can page in and out.
    images = cached_array("elpv", "images", cache_key(ASSETS["elpv"].sha256), lambda: _decode(root, rows), mmap=True)
    prob = np.array([float(p) for _, p, _ in rows])
    return SolarCells(images, prob, (prob >= 0.5).astype(np.int64), np.array([t for _, _, t in rows]))


def _decode(root: Path, rows: list[list[str]]) -> np.ndarray:
    """Decode every cell into one preallocated array (no second copy of 236 MB while stacking)."""
    images = np.empty((len(rows), 300, 300), np.uint8)
    for i, (path, _, _) in enumerate(rows):
        with Image.open(root / path) as img:
            images[i] = np.asarray(img.convert("L"))
    return images


def _elpv_rows(root: Path) -> list[list[str]]:
    """The rows of the dataset's labels.csv: image path, defect probability, cell type."""
    with open(root / "labels.csv") as f:
        return [line.split() for line in f.read().splitlines() if line.strip()]


def elpv_file(index: int) -> Path:
    """The PNG file of cell number ``index`` in the asset (the order of ``load_elpv``)."""
    root = asset_path("elpv")
    return root / _elpv_rows(root)[index][0]


def elpv_splits(labels: np.ndarray, n_train: int = 800, n_val: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Index splits of the cells: a fixed test set of 656 (the paper's 25%), a fixed validation set,
    and ``n_train`` training cells drawn from the rest with ``seed``; all stratified by label.

    Introduced in ``03_replacing_the_head.ipynb``.
    """
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=PAPER_TEST_SIZE, stratify=labels, random_state=0)
    pool, val = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=0)
    if n_train < len(pool):
        pool, _ = train_test_split(pool, train_size=n_train, stratify=labels[pool], random_state=seed)
    return {"train": np.sort(pool), "val": np.sort(val), "test": np.sort(test)}


def paper_split(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Deitsch et al.'s 75/25 split: 1,968 training cells and the same 656 test cells as ``elpv_splits``."""
    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=PAPER_TEST_SIZE, stratify=labels, random_state=0)
    return {"train": np.sort(train), "test": np.sort(test)}


def few_labels(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` examples of every class, drawn with ``seed``.

    Introduced in ``01_doctor_to_lawyer.ipynb``.
    """
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def to_input(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, H, W, 3) -> float (N, 3, size, size), ImageNet-normalised, channels-last."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch wants to own writable memory
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise ImageInputError(f"Expected uint8 pixels (0-255), got {x.dtype}: pass the images as loaded, "
                              "before any scaling.")
    if x.ndim == 3:  # grey: the same picture in all three channels
        x = x.unsqueeze(1).expand(-1, 3, -1, -1)
    elif x.ndim == 4 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    else:
        raise ImageInputError(f"Expected images shaped (N, H, W) or (N, H, W, 3), got {tuple(x.shape)}.")
    x = x.float().div(255)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    # channels-last memory: the same numbers, laid out as convolutions on a CPU like them (1.6x faster here)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


DIHEDRAL = [(turns, flip) for flip in (False, True) for turns in range(4)]  # the 8 flips and quarter turns


def dihedral(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """Images (..., H, W) flipped left-right (if ``flip``) and turned by ``turns`` quarter turns."""
    return torch.rot90(x.flip(-1) if flip else x, turns, dims=(-2, -1))


def resize(images: np.ndarray, size: int, batch_size: int = 256) -> np.ndarray:
    """Grey uint8 images resized once to ``size`` x ``size`` (so training never decodes or resizes again).

    Works through the images a batch at a time: a float copy of all 2,624 cells would take 1 GB.
    """
    out = np.empty((len(images), size, size), np.uint8)
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[start:start + batch_size])).unsqueeze(1).float()  # a writable copy
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + batch_size] = x.round().clamp(0, 255).to(torch.uint8).squeeze(1).numpy()
    return out


def check_folder(root: str | Path) -> list[str]:
    """The class names of an image folder (one sub-folder per class), or ImageInputError saying what is wrong.

    Introduced in ``03_replacing_the_head.ipynb``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        parent = root.parent if root.parent.is_dir() else None
        near = difflib.get_close_matches(root.name, [p.name for p in parent.iterdir()], n=1) if parent else []
        hint = f" Did you mean {shown(parent / near[0])}?" if near else " Check the spelling, or give an absolute path."
        raise ImageInputError(f"No folder at {shown(root)}.{hint}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise ImageInputError(f"{shown(root)} needs one sub-folder per class (at least two), found {len(classes)}: "
                              "put each class's images in its own folder, e.g. good/ and bad/.")
    suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
    for name in classes:
        if not any(p.suffix.lower() in suffixes for p in (root / name).iterdir()):
            raise ImageInputError(f"Class folder {shown(root / name)} has no images ({', '.join(sorted(suffixes))}): "
                                  "add some, or remove the folder.")
    return classes


def load_folder(root: str | Path, size: int = 300) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A folder of images, one sub-folder per class -> grey uint8 images, labels and class names.

    Introduced in ``03_replacing_the_head.ipynb``.
    """
    root = Path(root).expanduser()
    classes = check_folder(root)
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.is_file() and not path.name.startswith("."):
                images.append(read_image(path, size))
                labels.append(label)
    return np.stack(images), np.array(labels), classes


def read_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """One image file -> grey uint8 (resized to ``size`` x ``size`` if given), or ImageInputError naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ImageInputError(f"No image file at {shown(path)}. Check the path "
                              f"(a relative path starts from {shown(Path.cwd())}).")
    try:
        with Image.open(path) as img:
            grey = img.convert("L")
            return np.asarray(grey.resize((size, size), Image.BILINEAR) if size else grey)
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageInputError(f"{shown(path)} is not an image Pillow can read ({type(exc).__name__}): "
                              "use PNG, JPEG or TIFF.") from None
