"""Benchmark: import (chunk + hash + store) of a 50 MiB file, next to plain sha256.

Measures, on the same bytes in the same run:
  * ``sha256``: hashlib over the whole buffer (the ceiling: every byte must be hashed once);
  * ``cid_only``: the UnixFS importer without storing (``ipfs add --only-hash``);
  * ``write_files``: the same bytes written as 256 KiB files (temp file + rename, no
    hashing): the disk's ceiling for any block store;
  * ``import``: ``EmbeddedStore.put`` into a fresh block store on disk (what a peer
    does to publish a snapshot), including the pin.

Usage:
    .venv/bin/python -m bench.storage_import [--mib 50] [--rounds 5]
Target (issue 3): import >= 300 MB/s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import trio

from learnae.storage.store import EmbeddedStore
from learnae.storage.unixfs import unixfs_cid

TARGET_MB_S = 300.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="where the block stores go (default: a temp dir)")
    args = ap.parse_args()
    data = os.urandom(args.mib * 1024 * 1024)
    rates: dict[str, list[float]] = {"sha256": [], "cid_only": [], "write_files": [], "import": []}

    def write_files(root: Path) -> None:
        root.mkdir()
        view = memoryview(data)
        for i in range(0, len(data), 262144):
            tmp, final = root / f".{i}.tmp", root / f"{i}.data"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, view[i:i + 262144])
            os.close(fd)
            os.replace(tmp, final)

    def timed(name: str, fn) -> None:
        t = time.perf_counter()
        fn()
        rates[name].append(len(data) / (time.perf_counter() - t) / 1e6)

    # Nothing is deleted until the end: on this ext4 (mounted with `discard`) a deletion
    # makes the next journal commit slow, and whatever writes next pays for it.
    dirs: list[Path] = []
    try:
        for i in range(args.rounds):  # interleaved, so load changes hit all alike
            timed("sha256", lambda: hashlib.sha256(data).digest())
            timed("cid_only", lambda: unixfs_cid(data))
            for step in (("write_files", "import") if i % 2 == 0 else ("import", "write_files")):
                dirs.append(Path(tempfile.mkdtemp(prefix="bench-import-", dir=args.dir)))
                if step == "write_files":
                    timed("write_files", lambda: write_files(dirs[-1] / "plain"))
                else:
                    store = EmbeddedStore(dirs[-1] / "blocks")
                    timed("import", lambda: trio.run(store.put, data))
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(json.dumps({
        "mib": args.mib, "rounds": args.rounds,
        **{f"{k}_MB_s": [round(x) for x in v] for k, v in rates.items()},
        **{f"{k}_median_MB_s": round(v) for k, v in med.items()},
        "import_over_sha256": round(med["import"] / med["sha256"], 2),
        "import_over_write_files": round(med["import"] / med["write_files"], 2),
        "target_MB_s": TARGET_MB_S, "meets_target": med["import"] >= TARGET_MB_S,
    }, indent=2))


if __name__ == "__main__":
    main()
