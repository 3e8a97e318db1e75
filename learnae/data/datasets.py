"""Datasets: parse ``--dataset SPEC``, load local data, split it deterministically.

A spec is one of:

* ``digits``: scikit-learn's bundled handwritten digits (1,797 samples, no
  download), shaped ``(n, 8, 8, 1)`` float32 in ``[0, 1]``, labels 0-9;
* a path to an ``.npz`` file holding an ``x`` array (samples first, any numeric
  dtype, used as float32 without rescaling) and a ``y`` array of integer class
  labels ``>= 0``. It is read with ``allow_pickle=False``, always;
* a shard manifest CID printed by ``learnae data publish`` (see
  :mod:`learnae.data.manifest`); :func:`parse_dataset_spec` recognises it, and
  :func:`learnae.data.manifest.fetch_shard` loads it from a store.

Example:
    >>> ds = load_dataset("digits")
    >>> ds.x.shape, ds.num_classes
    ((1797, 8, 8, 1), 10)
    >>> parts = split_dataset(ds, seed=0)
    >>> len(parts.train) + len(parts.validation) + len(parts.test)
    1797
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learnae.errors import UserError

__all__ = ["DatasetError", "Dataset", "DatasetSpec", "Splits", "parse_dataset_spec",
           "load_dataset", "load_npz", "save_npz", "split_dataset", "BUILTIN"]

BUILTIN = ("digits",)


class DatasetError(UserError):
    """A ``--dataset`` spec, data file or shard selection is invalid."""


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """Samples ``x`` (float32, samples first) with integer labels ``y`` in ``[0, num_classes)``."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or self.y.ndim != 1:
            raise ValueError(f"x has {len(self.x)} samples but y has shape {self.y.shape}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: np.ndarray, name: str | None = None) -> Dataset:
        """The samples at ``indices`` (same ``num_classes``)."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(self.x[idx], self.y[idx], self.num_classes, self.name if name is None else name)

    def class_histogram(self) -> list[int]:
        """Samples per class, ``num_classes`` entries."""
        return np.bincount(self.y, minlength=self.num_classes).astype(int).tolist()


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """A parsed ``--dataset`` value: ``kind`` is ``"builtin"``, ``"npz"`` or ``"cid"``."""

    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class Splits:
    """Disjoint train / validation / test parts of one dataset."""

    train: Dataset
    validation: Dataset
    test: Dataset


def parse_dataset_spec(spec: str) -> DatasetSpec:
    """Tell a builtin name, an ``.npz`` path and a manifest CID apart.

    Raises:
        DatasetError: the spec is none of them (the message lists the accepted forms).

    Example:
        >>> parse_dataset_spec("data/mnist.npz").kind
        'npz'
    """
    s = (spec or "").strip() if isinstance(spec, str) else ""
    if s in BUILTIN:
        return DatasetSpec("builtin", s)
    if s.endswith(".npz") or Path(s).expanduser().is_file():
        return DatasetSpec("npz", s)
    if s and _looks_like_cid(s):
        return DatasetSpec("cid", s)
    raise DatasetError(
        f"dataset spec {spec!r} is not a known dataset, an .npz file or a shard manifest CID: "
        f"use {', '.join(BUILTIN)}, a path like data.npz, or the CID printed by `learnae data publish`"
    )


def _looks_like_cid(s: str) -> bool:
    try:
        from multiformats import CID

        CID.decode(s)
        return True
    except Exception:
        return False


def load_dataset(spec: str) -> Dataset:
    """Load a local dataset (``digits`` or an ``.npz`` file).

    Raises:
        DatasetError: unknown spec, missing or unreadable file, missing ``x``/``y``,
            mismatched lengths, non-integer or negative labels, non-finite samples,
            or a CID (fetch those with :func:`learnae.data.manifest.fetch_shard`).
    """
    parsed = parse_dataset_spec(spec)
    if parsed.kind == "builtin":
        return _load_digits()
    if parsed.kind == "npz":
        return load_npz(Path(parsed.value))
    raise DatasetError(
        f"dataset spec {spec!r} is a CID: it is fetched from the swarm by the peer "
        "(learnae.data.manifest.fetch_shard), not loaded from disk"
    )


def _load_digits() -> Dataset:
    # Read scikit-learn's bundled CSV directly: importing sklearn costs seconds, the
    # file takes milliseconds. Fall back to the public API if the layout ever changes.
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    else:  # pragma: no cover - depends on the installed scikit-learn
        from sklearn.datasets import load_digits

        d = load_digits()
        images, target = d.images, d.target.astype(np.int64)
    x = (images / 16.0).astype(np.float32)[..., None]
    return Dataset(x, target, 10, "digits")


def load_npz(path: Path) -> Dataset:
    """Load and validate an ``.npz`` file with ``x`` and ``y`` arrays (no pickle)."""
    path = Path(path).expanduser()
    where = f"dataset file {str(path)!r}"
    if not path.is_file():
        raise DatasetError(f"{where} does not exist: check the path")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x", "y") if k not in npz.files]
            if missing:
                raise DatasetError(
                    f"{where} has no {' and no '.join(repr(m) for m in missing)} array "
                    f"(it has {npz.files}): save it with np.savez(path, x=samples, y=labels)"
                )
            x, y = npz["x"], npz["y"]
    except DatasetError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        # ValueError includes "Object arrays cannot be loaded when allow_pickle=False"
        raise DatasetError(
            f"{where} is not a readable numeric .npz ({exc}): save it with np.savez(path, x=..., y=...)"
        ) from None
    return validate_arrays(x, y, where=where, name=path.stem)


def save_npz(ds: Dataset, path: Path) -> None:
    """Write ``ds`` as an ``.npz`` with ``x`` and ``y`` (atomically; loadable by :func:`load_npz`).

    Example:
        >>> save_npz(shard, Path("shard-0.npz"))   # doctest: +SKIP
    """
    import io

    from learnae.fsutil import atomic_write

    buf = io.BytesIO()
    np.savez(buf, x=np.asarray(ds.x, np.float32), y=np.asarray(ds.y, np.int64))
    atomic_write(Path(path), buf.getvalue())


def validate_arrays(x: np.ndarray, y: np.ndarray, *, where: str, name: str = "",
                    num_classes: int | None = None) -> Dataset:
    """Check raw ``x``/``y`` arrays and wrap them as a :class:`Dataset`.

    Raises:
        DatasetError: naming ``where`` and what to fix.
    """
    if x.dtype.kind not in "biuf" or x.ndim < 2:
        raise DatasetError(f"{where}: x must be a numeric array with samples first, got dtype {x.dtype} shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or len(y) == 0:
        raise DatasetError(f"{where}: y must be 1-D with one label per sample; x has {len(x)} samples, y has shape {y.shape}")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu" or int(y.min()) < 0:
        raise DatasetError(f"{where}: y must hold integer class labels >= 0, got dtype {y.dtype}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DatasetError(f"{where}: x has NaN or infinite values; clean the data")
    y = y.astype(np.int64)
    classes = int(y.max()) + 1
    if num_classes is not None:
        if classes > num_classes:
            raise DatasetError(f"{where}: label {classes - 1} is out of range for {num_classes} classes")
        classes = num_classes
    return Dataset(x, y, classes, name)


def split_dataset(ds: Dataset, *, seed: int, validation: float = 0.1, test: float = 0.2) -> Splits:
    """Split into train / validation / test, stratified by class, as a pure function of ``seed``.

    Every peer that uses the same dataset and seed gets the same test set, so
    accuracies are comparable across the swarm; shards are cut from ``train`` only.

    Raises:
        DatasetError: fractions outside ``[0, 1)`` or summing to 1 or more.
    """
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise DatasetError(f"validation={validation} and test={test} must be fractions in [0, 1) summing to < 1")
    rng = np.random.default_rng([seed, 0x5EED])
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in range(ds.num_classes):
        idx = rng.permutation(np.flatnonzero(ds.y == c))
        n_test = int(round(len(idx) * test))
        n_val = int(round(len(idx) * validation))
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    train, val, tst = (np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts)
    return Splits(ds.subset(train), ds.subset(val), ds.subset(tst))
