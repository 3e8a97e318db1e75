"""Datasets: parse ``--dataset SPEC``, load local data, split it deterministically.

A spec is one of:

* ``digits``: scikit-learn's bundled handwritten digits (1,797 samples, no
  download), shaped ``(n, 8, 8, 1)`` float32 in ``[0, 1]``, labels 0-9;
* ``mnist1d``: MNIST-1D (Greydanus & Kobak, ICML 2024), 5,000 signals of length
  40 generated locally by the ``mnist1d`` package with its default arguments
  (seed 42), shaped ``(n, 40, 1)`` float32, labels 0-9. It carries the paper's own
  4,000 / 1,000 train / test split, which :func:`split_dataset` keeps (see
  :func:`load_mnist1d`);
* a path to an ``.npz`` file holding an ``x`` array (samples first, any numeric
  dtype, used as float32 without rescaling) and a ``y`` array of integer class
  labels ``>= 0``. It is read with ``allow_pickle=False``, always. Files that
  learnae writes (``learnae data split``) also hold a ``learnae`` array: one JSON
  string of metadata (:func:`read_npz_meta`), e.g. which file holds their
  held-out test split;
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

import hashlib
import logging
import os
import threading
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learnae.errors import UserError

__all__ = ["DatasetError", "Dataset", "DatasetSpec", "Splits", "parse_dataset_spec",
           "load_dataset", "load_npz", "save_npz", "read_npz_meta", "split_dataset", "load_mnist1d", "cache_dir",
           "BUILTIN", "META_KEY"]

log = logging.getLogger(__name__)

BUILTIN = ("digits", "mnist1d")
META_KEY = "learnae"  # the .npz array holding learnae's metadata as one JSON string


class DatasetError(UserError):
    """A ``--dataset`` spec, data file or shard selection is invalid."""


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """Samples ``x`` (float32, samples first) with integer labels ``y`` in ``[0, num_classes)``.

    ``test_mask`` (optional, boolean, one entry per sample) marks the samples the
    dataset's authors set aside as its test set (MNIST-1D's 1,000); when present,
    :func:`split_dataset` uses exactly those as the test part, so accuracies compare
    with the published ones. A subset keeps the marks of the samples it takes.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str = ""
    test_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or self.y.ndim != 1:
            raise ValueError(f"x has {len(self.x)} samples but y has shape {self.y.shape}")
        if self.test_mask is not None and (self.test_mask.dtype != np.bool_ or self.test_mask.shape != self.y.shape):
            raise ValueError(f"test_mask must be a boolean array of shape {self.y.shape}, "
                             f"got {self.test_mask.dtype} {self.test_mask.shape}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: np.ndarray, name: str | None = None) -> Dataset:
        """The samples at ``indices`` (same ``num_classes``, their ``test_mask`` entries)."""
        idx = np.asarray(indices, dtype=np.int64)
        mask = None if self.test_mask is None else self.test_mask[idx]
        return Dataset(self.x[idx], self.y[idx], self.num_classes, self.name if name is None else name, mask)

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
    """Load a local dataset (``digits``, ``mnist1d`` or an ``.npz`` file).

    Raises:
        DatasetError: unknown spec, missing or unreadable file, missing ``x``/``y``,
            mismatched lengths, non-integer or negative labels, non-finite samples,
            or a CID (fetch those with :func:`learnae.data.manifest.fetch_shard`).
    """
    parsed = parse_dataset_spec(spec)
    if parsed.kind == "builtin":
        return load_mnist1d() if parsed.value == "mnist1d" else _load_digits()
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


# -- MNIST-1D -------------------------------------------------------------------------

MNIST1D_CACHE_FORMAT = 1  # bump when the cached file's layout changes
_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")  # the generator's own names, train then test
_MNIST1D_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where learnae caches data it generated: ``$XDG_CACHE_HOME/learnae`` or ``~/.cache/learnae``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "learnae"


def load_mnist1d(*, cache: Path | None = None) -> Dataset:
    """MNIST-1D exactly as its authors' generator makes it, with the paper's test split marked.

    The ``mnist1d`` package generates the data locally:
    ``mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())`` (5,000 samples,
    length 40, seed 42; its first 4,000 are the paper's training set, the last 1,000
    its test set). Its ``get_dataset`` is never called: it downloads a pickle and
    unpickles it. Generating takes ~5 s, so the arrays are cached in ``cache``
    (default :func:`cache_dir`) as ``mnist1d-<key>.npz``. The key hashes the
    generator's source files (which hold its default arguments, the seed included),
    so another ``mnist1d`` version gets its own file, and a cache hit needs no import
    of ``mnist1d`` (with matplotlib and scipy, ~1 s). The file is written atomically
    and read back with ``allow_pickle=False``; an unreadable or unexpected file is
    regenerated.

    Returns:
        ``Dataset`` ``"mnist1d"``: ``x`` of shape ``(5000, 40, 1)`` float32 (the
        generator's standardised signals, mean ~0, std ~1), ``y`` 0-9, and
        ``test_mask`` true for the paper's 1,000 test samples (the last 1,000).

    Raises:
        DatasetError: the ``mnist1d`` package is not installed.

    Example:
        >>> ds = load_mnist1d()                                  # doctest: +SKIP
        >>> ds.x.shape, int(ds.test_mask.sum())                  # doctest: +SKIP
        ((5000, 40, 1), 1000)
    """
    path = (cache or cache_dir()) / f"mnist1d-{_mnist1d_key()}.npz"
    arrays = _read_mnist1d_cache(path)
    if arrays is None:
        arrays = _generate_mnist1d()
        _write_mnist1d_cache(path, arrays)
    x_train, y_train, x_test, y_test = arrays
    x = np.concatenate([x_train, x_test])[..., None]  # (n, 40, 1): a 1-channel signal, as Conv1D wants
    y = np.concatenate([y_train, y_test])
    mask = np.arange(len(y)) >= len(y_train)
    return Dataset(x, y, 10, "mnist1d", mask)


def _mnist1d_key() -> str:
    """16 hex digits of sha256 over the ``mnist1d`` package's sources (found, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("mnist1d")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("dataset 'mnist1d' needs the mnist1d package: pip install mnist1d")
    digest = hashlib.sha256(f"learnae-mnist1d-cache/{MNIST1D_CACHE_FORMAT}".encode())
    for source in sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _generate_mnist1d() -> tuple[np.ndarray, ...]:
    import random

    try:
        import mnist1d.data as generator  # also imports matplotlib.pyplot, scipy and requests
    except ImportError:
        raise DatasetError("dataset 'mnist1d' needs the mnist1d package: pip install mnist1d") from None
    # make_dataset reseeds and draws from the process-wide numpy and Python generators
    # (np.random.seed(42)): save and restore them so loading data never changes what
    # the caller's own random draws would have been. The lock keeps two threads from
    # interleaving draws on those shared generators.
    with _MNIST1D_LOCK:
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            data = generator.make_dataset(generator.get_dataset_args())
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
    return (np.asarray(data["x"], np.float32), np.asarray(data["y"], np.int64),
            np.asarray(data["x_test"], np.float32), np.asarray(data["y_test"], np.int64))


def _read_mnist1d_cache(path: Path) -> tuple[np.ndarray, ...] | None:
    """The cached arrays, or ``None`` when the file is absent or not what we wrote."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = tuple(npz[k] for k in _MNIST1D_KEYS)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        log.warning("ignoring unreadable MNIST-1D cache %s (%s); regenerating", path, exc)
        return None
    x, y, xt, yt = arrays
    ok = (x.dtype == xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64 and x.ndim == xt.ndim == 2
          and y.ndim == yt.ndim == 1
          and x.shape[1] == xt.shape[1] and len(x) == len(y) and len(xt) == len(yt) and len(y) and len(yt)
          and np.all(np.isfinite(x)) and np.all(np.isfinite(xt))
          and min(y.min(), yt.min()) >= 0 and max(y.max(), yt.max()) < 10)
    if not ok:
        log.warning("ignoring MNIST-1D cache %s: unexpected arrays; regenerating", path)
        return None
    return arrays


def _write_mnist1d_cache(path: Path, arrays: tuple[np.ndarray, ...]) -> None:
    import io

    from learnae.fsutil import atomic_write

    buf = io.BytesIO()
    np.savez(buf, **dict(zip(_MNIST1D_KEYS, arrays)))
    try:
        # Not durable: a cache lost in a crash is regenerated. Atomic, so peers starting
        # together never read each other's half-written file.
        atomic_write(path, buf.getvalue(), durable=False)
    except OSError as exc:  # a read-only home only costs the next start a few seconds
        log.warning("cannot cache MNIST-1D in %s (%s); it will be generated again next time", path, exc)


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
            meta = _meta(npz)
    except DatasetError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        # ValueError includes "Object arrays cannot be loaded when allow_pickle=False"
        raise DatasetError(
            f"{where} is not a readable numeric .npz ({exc}): save it with np.savez(path, x=..., y=...)"
        ) from None
    classes = meta.get("num_classes")
    # a shard of a few classes keeps the class count of the dataset it was cut from
    num_classes = classes if type(classes) is int and classes > 0 else None
    return validate_arrays(x, y, where=where, name=meta.get("name") or path.stem, num_classes=num_classes)


def _meta(npz) -> dict:
    if META_KEY not in npz.files:
        return {}
    arr = npz[META_KEY]
    try:
        meta = json.loads(str(arr.item())) if arr.dtype.kind == "U" and arr.size == 1 else None
    except ValueError:
        meta = None
    return meta if isinstance(meta, dict) else {}


def read_npz_meta(path: Path) -> dict:
    """The metadata learnae wrote into an ``.npz`` file (``{}`` for any other file, or an unreadable one).

    Example:
        >>> read_npz_meta(Path("shards/shard-0-of-4.npz"))["test"]   # doctest: +SKIP
        'test.npz'
    """
    try:
        with np.load(Path(path).expanduser(), allow_pickle=False) as npz:
            return _meta(npz)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return {}


def save_npz(ds: Dataset, path: Path, *, meta: dict | None = None) -> None:
    """Write ``ds`` as an ``.npz`` with ``x`` and ``y`` (atomically; loadable by :func:`load_npz`).

    Args:
        meta: JSON-ready metadata, stored as the ``learnae`` array (a string, so the
            file still loads with ``allow_pickle=False``); ``num_classes`` and ``name``
            are always part of it.

    Example:
        >>> save_npz(shard, Path("shard-0.npz"), meta={"test": "test.npz"})   # doctest: +SKIP
    """
    import io

    from learnae.fsutil import atomic_write

    info = {"name": ds.name, "num_classes": int(ds.num_classes), **(meta or {})}
    buf = io.BytesIO()
    np.savez(buf, x=np.asarray(ds.x, np.float32), y=np.asarray(ds.y, np.int64),
             **{META_KEY: np.array(json.dumps(info, sort_keys=True))})
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
    if y.dtype.kind not in "iu":
        raise DatasetError(f"{where}: y must hold integer class labels >= 0, got dtype {y.dtype} "
                           "(with values that are not whole numbers); store the class indices")
    if int(y.min()) < 0:
        raise DatasetError(f"{where}: y holds negative labels (smallest {int(y.min())}); class labels must be "
                           ">= 0: renumber them, e.g. with np.unique(y, return_inverse=True)[1]")
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

    A dataset with its own test set (``ds.test_mask``, e.g. ``mnist1d``) keeps it:
    the test part is exactly the marked samples, whatever ``test`` says, and the
    validation part is carved from the unmarked ones, ``validation`` of each class's
    size (stratified, seeded as usual). For ``mnist1d`` with the defaults that is
    3,500 train / 500 validation (from the paper's 4,000 training samples) / the
    paper's 1,000 test samples.

    Raises:
        DatasetError: fractions outside ``[0, 1)`` or summing to 1 or more, or a
            validation share that would leave a class with no training sample.
    """
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise DatasetError(f"validation={validation} and test={test} must be fractions in [0, 1) summing to < 1")
    rng = np.random.default_rng([seed, 0x5EED])
    parts: list[list[np.ndarray]] = [[], [], []]
    if ds.test_mask is not None:
        parts[2].append(np.flatnonzero(ds.test_mask))
    for c in range(ds.num_classes):
        of_class = ds.y == c
        if ds.test_mask is None:
            idx = rng.permutation(np.flatnonzero(of_class))
            n_test = int(round(len(idx) * test))
            parts[2].append(idx[:n_test])
        else:
            idx, n_test = rng.permutation(np.flatnonzero(of_class & ~ds.test_mask)), 0
        n_val = int(round(int(of_class.sum()) * validation))
        if ds.test_mask is not None and len(idx) and n_val >= len(idx):
            raise DatasetError(f"validation={validation} leaves class {c} of {ds.name or 'the dataset'} no "
                               f"training sample ({len(idx)} outside its test set); use a smaller share")
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    train, val, tst = (np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts)
    return Splits(ds.subset(train), ds.subset(val), ds.subset(tst))
