"""Data sets for model workloads: synthetic, scikit-learn's digits, and MNIST IDX files.

* ``synthetic``: seeded random images and labels (throughput cases; nothing to learn).
* ``digits``: the 1,797 8x8 handwritten digits bundled with scikit-learn (real data, no download),
  scaled up (bilinear) and centred on the model's input size, replicated over its channels.
* ``mnist``: the IDX files (``train-images-idx3-ubyte`` etc., optionally ``.gz``) from a directory given
  in the suite (``data_dir``, relative to the suite file) or by ``ACCELBENCH_MNIST_DIR``; nothing is
  downloaded at run time, and a missing file is an error naming every place that was looked at.

Inputs are normalised per channel with the training split's mean and standard deviation; train and test
never share an example.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MNIST_ENV = "ACCELBENCH_MNIST_DIR"
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DataError(Exception):
    """A data set that cannot be found or read (the message says where it looked)."""


@dataclass
class Dataset:
    """Train and test splits, images (N, C, H, W) float32 normalised, labels int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    train_index: np.ndarray | None = None  # positions in the source data (digits), to prove no overlap
    test_index: np.ndarray | None = None

    def summary(self) -> dict[str, object]:
        return {"data": self.name, "train_examples": int(len(self.y_train)),
                "test_examples": int(len(self.y_test)), "classes": self.classes}


def synthetic(shape: tuple[int, int, int], classes: int, n: int, seed: int = 0,
              dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """Seeded standard-normal images (n, C, H, W) and uniform labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape), dtype=np.float32).astype(dtype)
    y = rng.integers(0, classes, size=n)
    return x, y


def fit_images(images: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Resize (N, h, w) grey images to (N, C, H, W): bilinear scaling by the largest factor that fits,
    centred with zero padding, replicated over C channels."""
    from scipy import ndimage

    n, h, w = images.shape
    c, H, W = shape
    scale = min(H / h, W / w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if (nh, nw) != (h, w):
        images = ndimage.zoom(images.astype(np.float64), (1, nh / h, nw / w), order=1, grid_mode=True,
                              mode="grid-constant")
        nh, nw = images.shape[1:]
    out = np.zeros((n, c, H, W), dtype=np.float32)
    top, left = (H - nh) // 2, (W - nw) // 2
    out[:, :, top:top + nh, left:left + nw] = images[:, None, :, :]
    return out


def normalise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel standardisation with the training split's statistics (the test split never informs
    them)."""
    axes = (0, 2, 3)
    mean = train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = train.std(axis=axes, keepdims=True, dtype=np.float64)
    std[std == 0] = 1.0
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded, disjoint train/test index sets."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        rng.shuffle(idx)
        n_test = max(1, int(round(len(idx) * test_fraction)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    tr, te = np.concatenate(train), np.concatenate(test)
    rng.shuffle(tr)
    rng.shuffle(te)
    return tr, te


def digits(shape: tuple[int, int, int], test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's digits, fitted to ``shape`` and split (stratified) into train and test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.float32) / 16.0
    labels = d.target.astype(np.int64)
    tr, te = split_indices(labels, test_fraction, seed)
    x = fit_images(images, shape)
    xtr, xte = normalise(x[tr], x[te])
    return Dataset("digits", xtr, labels[tr], xte, labels[te], 10, tr, te)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {body.size} bytes")
    return body.reshape(dims)


def mnist_dirs(data_dir: str | Path | None, suite_dir: Path | None = None) -> list[Path]:
    """Where MNIST is looked for, in order: the suite's ``data_dir`` (relative to the suite file), then
    ``$ACCELBENCH_MNIST_DIR``."""
    out = []
    if data_dir:
        p = Path(data_dir).expanduser()
        out.append(p if p.is_absolute() or suite_dir is None else suite_dir / p)
    env = os.environ.get(MNIST_ENV)
    if env:
        out.append(Path(env).expanduser())
    return out


def _find(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            p = d / name
            if p.is_file():
                return p
    return None


def mnist(shape: tuple[int, int, int], data_dir: str | Path | None = None, suite_dir: Path | None = None,
          limit_train: int | None = None, limit_test: int | None = None) -> Dataset:
    """MNIST from IDX files (the official 60,000/10,000 split, disjoint by construction)."""
    dirs = mnist_dirs(data_dir, suite_dir)
    if not dirs:
        raise DataError(f"mnist: no directory given; set the entry's data_dir parameter or {MNIST_ENV} to a "
                        f"directory holding {', '.join(MNIST_FILES.values())} (.gz allowed)")
    found = {}
    for key, stem in MNIST_FILES.items():
        p = _find(dirs, stem)
        if p is None:
            where = ", ".join(str(d) for d in dirs)
            raise DataError(f"mnist: {stem}[.gz] not found; looked in: {where} (data_dir parameter, then "
                            f"{MNIST_ENV}); nothing is downloaded at run time")
        found[key] = p
    xtr = _read_idx(found["train_images"])
    ytr = _read_idx(found["train_labels"]).astype(np.int64)
    xte = _read_idx(found["test_images"])
    yte = _read_idx(found["test_labels"]).astype(np.int64)
    if xtr.ndim != 3 or xte.ndim != 3 or len(xtr) != len(ytr) or len(xte) != len(yte):
        raise DataError(f"mnist: inconsistent files in {found['train_images'].parent}")
    if limit_train:
        xtr, ytr = xtr[:limit_train], ytr[:limit_train]
    if limit_test:
        xte, yte = xte[:limit_test], yte[:limit_test]
    a = fit_images(xtr.astype(np.float32) / 255.0, shape)
    b = fit_images(xte.astype(np.float32) / 255.0, shape)
    a, b = normalise(a, b)
    return Dataset("mnist", a, ytr, b, yte, 10)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (``.gz`` compresses); used to make small test fixtures."""
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    head = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(head + arr.tobytes())
