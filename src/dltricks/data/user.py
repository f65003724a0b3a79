"""User data as registered datasets: an image folder, NumPy/CSV arrays, and 3-D volumes.

* ``image_folder``: ``path/<class>/<image>`` (the torchvision ImageFolder layout), read with
  Pillow, converted to grayscale or RGB, resized, held in memory; x float in [0, 1].
* ``arrays``: an ``.npz`` with arrays ``x`` and ``y``, or a ``.csv`` of numbers whose label is
  the last column (or ``label_column``). x of 3+ dims is read as (N, C, *spatial).
* ``volumes``: ``path/images/*.npy`` and ``path/masks/*.npy`` of equal names; volumes (D, H, W)
  or (C, D, H, W), masks (D, H, W) of integer labels.

Bad input raises ``FileNotFoundError`` or ``ValueError`` with a message naming the offending file
or field. Labels are never remapped: they must be integers 0..K-1, and K = max + 1; a single
class, or labels with gaps such as {0, 1, 1000} (K = 1001, 998 classes without samples), load
with a ``UserWarning``.
"""

from __future__ import annotations

import csv
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from dltricks.data.base import ArrayDataset, DatasetSplits, register_dataset, split_indices

USER_DATASETS = ("image_folder", "arrays", "volumes")
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
FRACTIONS = (0.6, 0.2, 0.2)


def _existing(path: str | Path | None, what: str) -> Path:
    if path is None:
        raise ValueError(f"The {what} dataset needs a `path` kwarg.")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what}: path {str(p)!r} does not exist.")
    return p


def _check_labels(y: np.ndarray, where: str, num_classes: int | None = None) -> np.ndarray:
    """Checks that ``y`` holds integers in [0, K) and returns it as int64."""
    if y.size == 0:
        raise ValueError(f"{where} is empty.")
    if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        raise ValueError(f"{where} must be numeric integer labels, got dtype {y.dtype}.")
    if not np.all(np.isfinite(y)) or not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError(f"{where} must hold integer labels 0..K-1; found non-integer values.")
    if y.min() < 0:
        raise ValueError(f"{where} must hold labels 0..K-1; found negative label {int(y.min())}.")
    if num_classes is not None and y.max() >= num_classes:
        raise ValueError(f"{where} has label {int(y.max())} outside [0, {num_classes}).")
    return y.astype(np.int64)


def _warn_labels(y: np.ndarray, where: str) -> None:
    """Warns about labels that train a model badly without being wrong: a single class, or
    integers with gaps (e.g. {0, 1, 1000}: K = max + 1 = 1001 outputs, 998 of them never seen)."""
    present = np.unique(y)
    k = int(present.max()) + 1
    if len(present) == 1:
        warnings.warn(f"{where} holds a single class ({int(present[0])}); a classifier has "
                      "nothing to learn. Check the labels or the file.", UserWarning, stacklevel=3)
    elif len(present) < k:
        absent = k - len(present)
        shown = ", ".join(str(int(v)) for v in present[:6]) + (", ..." if len(present) > 6 else "")
        warnings.warn(f"{where} uses {len(present)} distinct labels ({shown}) but K = max + 1 "
                      f"= {k} classes, {absent} of them without samples; labels are not "
                      "remapped, so remap them to 0..K-1 if the gaps are not intended.",
                      UserWarning, stacklevel=3)


def _splits(name: str, task: str, x: torch.Tensor, y: torch.Tensor, num_classes: int,
            spatial_dims: int, seed: int, fractions: tuple[float, float, float],
            stratify: bool, info: dict, class_names: list[str] | None = None) -> DatasetSplits:
    full = ArrayDataset(x, y)
    tr, va, te = split_indices(len(full), tuple(fractions), seed=seed,
                               stratify=y if stratify else None)
    return DatasetSplits(
        name=name, task=task, train=full.subset(tr), val=full.subset(va), test=full.subset(te),
        num_classes=num_classes, input_shape=tuple(x.shape[1:]), spatial_dims=spatial_dims,
        class_names=class_names, info={**info, "fractions": list(fractions)},
    )


@register_dataset("image_folder", task="classification",
                  description="user images in path/<class>/<file>, loaded into memory")
def image_folder(seed: int = 0, path: str | Path | None = None, channels: int = 3,
                 image_size: int = 32,
                 fractions: tuple[float, float, float] = FRACTIONS) -> DatasetSplits:
    """Loads a folder with one subfolder of images per class (sorted names = classes 0..K-1).

    Args:
        seed: split seed (stratified).
        path: the root folder.
        channels: 1 (grayscale) or 3 (RGB).
        image_size: S; every image is resized to S x S (bilinear).
        fractions: train, val, test fractions.

    Returns:
        DatasetSplits with x float (N, channels, S, S) in [0, 1], y long (N,).
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}.")
    root = _existing(path, "image_folder")
    if not root.is_dir():
        raise ValueError(f"image_folder: {str(root)!r} is not a folder.")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"image_folder: {str(root)!r} has no class subfolders; expected "
                         "path/<class>/<image files>.")
    images, labels = [], []
    for label, folder in enumerate(classes):
        files = sorted(f for f in folder.iterdir()
                       if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."))
        if not files:
            raise ValueError(f"image_folder: class folder {str(folder)!r} has no image files "
                             f"({', '.join(sorted(IMAGE_EXTENSIONS))}).")
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert("L" if channels == 1 else "RGB")
                    im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
                    arr = np.asarray(im, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError, ValueError) as err:
                raise ValueError(f"image_folder: cannot read image file {str(f)!r}: {err}") from err
            images.append(arr[None] if channels == 1 else arr.transpose(2, 0, 1))
            labels.append(label)
    if len(classes) == 1:
        warnings.warn(f"image_folder: {str(root)!r} has a single class folder "
                      f"({classes[0].name!r}); a classifier has nothing to learn.",
                      UserWarning, stacklevel=2)
    x = torch.from_numpy(np.stack(images))  # (N, C, S, S)
    y = torch.tensor(labels, dtype=torch.long)
    return _splits("image_folder", "classification", x, y, len(classes), 2, seed, fractions,
                   True, {"source": str(root), "channels": channels, "image_size": image_size},
                   class_names=[c.name for c in classes])


def _read_csv(path: Path, label_column: str | int | None) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"arrays: CSV file {str(path)!r} is empty.")

    def numeric(row: list[str]) -> bool:
        try:
            [float(c) for c in row]
        except ValueError:
            return False
        return True

    header = None if numeric(rows[0]) else [c.strip() for c in rows[0]]
    body = rows[1:] if header else rows
    if not body:
        raise ValueError(f"arrays: CSV file {str(path)!r} has a header but no data rows.")
    width = len(rows[0])
    if width < 2:
        raise ValueError(f"arrays: CSV file {str(path)!r} needs features and a label column.")
    if label_column is None:
        col = width - 1
    elif isinstance(label_column, int):
        if not -width <= label_column < width:
            raise ValueError(f"arrays: label_column {label_column} is out of range for "
                             f"{width} columns in {str(path)!r}.")
        col = label_column % width
    else:
        if header is None or label_column not in header:
            raise ValueError(f"arrays: label_column {label_column!r} is not a column of "
                             f"{str(path)!r} (header: {header}).")
        col = header.index(label_column)
    data = np.empty((len(body), width), dtype=np.float64)
    for i, row in enumerate(body):
        line = i + (2 if header else 1)
        if len(row) != width:
            raise ValueError(f"arrays: {str(path)!r} line {line} has {len(row)} fields, "
                             f"expected {width}.")
        try:
            data[i] = [float(c) for c in row]
        except ValueError as err:
            raise ValueError(f"arrays: {str(path)!r} line {line} is not numeric: {err}") from err
    return np.delete(data, col, axis=1), data[:, col]


@register_dataset("arrays", task="classification",
                  description="user arrays: .npz with x and y, or .csv with a label column")
def arrays(seed: int = 0, path: str | Path | None = None, label_column: str | int | None = None,
           fractions: tuple[float, float, float] = FRACTIONS) -> DatasetSplits:
    """Loads a classification dataset from ``.npz`` (arrays ``x``, ``y``) or ``.csv``.

    Args:
        seed: split seed (stratified).
        path: the ``.npz`` or ``.csv`` file.
        label_column: CSV only: label column by header name or index (default: the last).
        fractions: train, val, test fractions.

    Returns:
        DatasetSplits with x float (N, F) (spatial_dims 0) or (N, C, *spatial) (spatial_dims =
        x.ndim - 2), and y long (N,) in [0, K), K = max label + 1.
    """
    p = _existing(path, "arrays")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        if label_column is not None:
            raise ValueError("arrays: label_column only applies to .csv files.")
        if not zipfile.is_zipfile(p):
            with p.open("rb") as fh:
                npy = fh.read(6) == b"\x93NUMPY"
            raise ValueError(
                f"arrays: {str(p)!r} is not a valid .npz file ("
                + ("a single .npy array saved under an .npz name" if npy else "not a zip archive")
                + "); write one with numpy.savez(path, x=inputs, y=labels).")
        try:
            with np.load(p, allow_pickle=False) as npz:
                found = {k: npz[k] for k in npz.files if k in ("x", "y")}
                files = list(npz.files)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise ValueError(f"arrays: cannot read .npz file {str(p)!r}: {err}") from err
        missing = [k for k in ("x", "y") if k not in found]
        if missing:
            raise ValueError(f"arrays: {str(p)!r} lacks array(s) {missing}; it holds {files}, "
                             "expected 'x' and 'y'.")
        x_np, y_np = found["x"], found["y"]
    elif suffix == ".csv":
        x_np, y_np = _read_csv(p, label_column)
    else:
        raise ValueError(f"arrays: {str(p)!r} must be a .npz or .csv file.")
    if y_np.ndim != 1:
        raise ValueError(f"arrays: field 'y' in {str(p)!r} must be 1-D (N,), got shape "
                         f"{y_np.shape}.")
    if x_np.ndim == 0 or x_np.shape[0] != y_np.shape[0]:
        raise ValueError(f"arrays: fields 'x' and 'y' in {str(p)!r} have mismatched lengths: "
                         f"x {x_np.shape} vs y {y_np.shape}.")
    if not np.issubdtype(x_np.dtype, np.number) or not np.all(np.isfinite(x_np)):
        raise ValueError(f"arrays: field 'x' in {str(p)!r} must be finite numbers.")
    y_np = _check_labels(y_np, f"arrays: field 'y' in {str(p)!r}")
    _warn_labels(y_np, f"arrays: field 'y' in {str(p)!r}")
    x = torch.from_numpy(np.ascontiguousarray(x_np, dtype=np.float32))
    if x.ndim == 1:
        x = x[:, None]
    spatial_dims = x.ndim - 2 if x.ndim >= 3 else 0
    if spatial_dims > 3:
        raise ValueError(f"arrays: field 'x' in {str(p)!r} has {x.ndim} dims; at most 5 "
                         "(N, C, D, H, W) are supported.")
    return _splits("arrays", "classification", x, torch.from_numpy(y_np), int(y_np.max()) + 1,
                   spatial_dims, seed, fractions, True, {"source": str(p)})


@register_dataset("volumes", task="segmentation",
                  description="user 3-D volumes: path/images/*.npy with path/masks/*.npy")
def volumes(seed: int = 0, path: str | Path | None = None, num_classes: int | None = None,
            fractions: tuple[float, float, float] = FRACTIONS) -> DatasetSplits:
    """Loads 3-D segmentation volumes from ``path/images`` and ``path/masks`` (same file names).

    Args:
        seed: split seed (not stratified).
        path: folder holding ``images/`` and ``masks/``.
        num_classes: K; mask values must lie in [0, K). Default: max mask value + 1 (>= 2).
        fractions: train, val, test fractions.

    Returns:
        DatasetSplits with x float (N, C, D, H, W) and y long (N, D, H, W).
    """
    root = _existing(path, "volumes")
    img_dir, mask_dir = root / "images", root / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"volumes: folder {str(d)!r} does not exist.")
    images = sorted(img_dir.glob("*.npy"))
    if not images:
        raise ValueError(f"volumes: folder {str(img_dir)!r} has no .npy files.")
    mask_names = {m.name for m in mask_dir.glob("*.npy")}
    for extra in sorted(mask_names - {f.name for f in images}):
        raise ValueError(f"volumes: mask {str(mask_dir / extra)!r} has no image in {img_dir}.")
    xs, ys = [], []
    for f in images:
        m = mask_dir / f.name
        if f.name not in mask_names:
            raise ValueError(f"volumes: volume {str(f)!r} has no mask {str(m)!r}.")
        try:
            vol, mask = np.load(f, allow_pickle=False), np.load(m, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise ValueError(f"volumes: cannot read {str(f)!r} or its mask: {err}") from err
        if vol.ndim == 3:
            vol = vol[None]
        if vol.ndim != 4:
            raise ValueError(f"volumes: {str(f)!r} has shape {vol.shape}; expected (D, H, W) "
                             "or (C, D, H, W).")
        if mask.ndim == 4 and mask.shape[0] == 1:
            mask = mask[0]
        if mask.shape != vol.shape[1:]:
            raise ValueError(f"volumes: mask {str(m)!r} has shape {mask.shape} but volume "
                             f"{str(f)!r} has spatial shape {vol.shape[1:]}.")
        if xs and vol.shape != xs[0].shape:
            raise ValueError(f"volumes: {str(f)!r} has shape {vol.shape}, unlike "
                             f"{str(images[0])!r} with {xs[0].shape}; all volumes must match.")
        if not np.issubdtype(vol.dtype, np.number) or not np.all(np.isfinite(vol)):
            raise ValueError(f"volumes: {str(f)!r} must hold finite numbers.")
        xs.append(vol.astype(np.float32))
        ys.append(_check_labels(mask, f"volumes: mask {str(m)!r}", num_classes))
    present = np.unique(np.concatenate([np.unique(y) for y in ys]))
    if len(present) == 1:
        warnings.warn(f"volumes: every mask in {str(mask_dir)!r} holds the single label "
                      f"{int(present[0])}; a segmenter has nothing to learn.", UserWarning,
                      stacklevel=2)
    k = num_classes if num_classes is not None else max(2, max(int(y.max()) for y in ys) + 1)
    x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
    return _splits("volumes", "segmentation", x, y, k, 3, seed, fractions, False,
                   {"source": str(root), "files": [f.name for f in images]})
