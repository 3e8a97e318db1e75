"""Fuzz every decoder of outside bytes: only learnae's own errors may come out, whatever the input.

Decoders (the bytes come from other peers, or from files a crash or a user may have damaged):

==============  ======================================================  ======================
target          decoder                                                 may raise only
==============  ======================================================  ======================
snapshot        ``storage.snapshot.decode_snapshot`` (with and          InvalidSnapshotError
                without the expected fingerprint)
shard           ``data.shards.decode_shard``                            InvalidShardError
manifest        ``data.manifest.decode_manifest``                       InvalidShardError
checkpoint      ``peer.checkpoint.decode_checkpoint``                   StoreError
identity        ``identity.Identity.from_bytes`` (the key file)         KeyFileError
entry           ``ledger.entry.decode_entry``                           InvalidEntryError
dag-pb          ``storage.dagpb.decode_node`` + ``decode_unixfs``       InvalidBlockError
unixfs          ``storage.unixfs.read_file`` (1 MiB bound) and          InvalidBlockError,
                ``FileSizeGuard.visit`` of a mutated root               FetchError (missing)
bitswap         ``storage.bitswap.message.decode_message``              InvalidBlockError
==============  ======================================================  ======================

Cases, per target: 1 in 8 random bytes, 3 in 8 byte-level mutations of a valid
encoding (1-4 flips, sets, inserts, deletes, truncations, splices:
:func:`tests.ledger.fuzz.mutate`), and 1 in 2 *structured* mutations: the valid
encoding is decoded, one field anywhere in it (JSON headers and the JSON inside
their strings, DAG-CBOR maps, protobuf fields, PEM bodies) is replaced, deleted
or added with a hostile value (huge or negative integers, NaN/Infinity, wrong
types, deep nesting, odd Unicode), tensors get NaN/inf/1e30 values, and the
result is encoded again *validly*, so it reaches the checks after the parser.

An outcome is ``accepted`` (a mutation the decoder accepts, e.g. other finite
tensor values, or a signing key made of other seed bytes), ``unchanged`` (a
mutation that undid itself), or the rejection's ``reason`` (the exception's
class name when it has none). ``malformed`` is the reason of the guard inside the
snapshot, shard and manifest decoders that turns an exception their checks did
not foresee into a rejection: it should never be counted. Any other exception
is a bug: it is counted as ``UNEXPECTED <type>``, one example is printed, and
the command exits 1.

Usage::

    .venv/bin/python -m bench.decoder_fuzz --cases 120000 --seed 1

The same targets and mutators drive the hypothesis tests (``tests/storage/test_decoder_fuzz.py``).
"""

from __future__ import annotations

import argparse
import base64
import collections
import functools
import json
import math
import random
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tests.ledger.fuzz import mutate as mutate_bytes

__all__ = ["Target", "targets", "make_case", "outcome", "run", "mutate_json", "mutate_ipld"]

GUARD_REASON = "malformed"  # the decoders' last-resort guard (must stay at 0)


@dataclass(frozen=True)
class Target:
    """One decoder under fuzz: its valid seeds, how to call it, what it may raise, a structured mutator."""

    name: str
    seeds: tuple[bytes, ...]
    decode: Callable[[bytes], object]
    errors: tuple[type[BaseException], ...]
    structured: Callable[[bytes, random.Random], bytes]


# -- hostile values ------------------------------------------------------------------------------

_DEEP = "\x00deep\x00"  # replaced by deeply nested JSON text after dumping (json.dumps cannot nest that far)
_TEXTS = ("", "0", "-1", "1e999", "0x10", "00", " 1", "١٢", "NaN", "Infinity", "null", "{}", "[]", "\x00",
          "\ud7ff", "é", "😀", "a" * 5000, "F32", "I8", "F16", "F64", "float32", "int8", "float64", "O", "V8",
          "U9999999999", "__metadata__", "learnae-snapshot/1", "learnae-shard/1", "learnae-checkpoint/1",
          "w/0000", "o/0000", "x", "y", "[1,2]", '{"a":1}', '["w"]', "[" * 50, "9" * 30)


def hostile_json(rng: random.Random, depth: int = 0):
    """A JSON value chosen to break parsers of learnae's headers."""
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind == 0:
        return rng.choice((None, True, False))
    if kind == 1:
        return rng.choice((0, 1, -1, 7, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400,
                           rng.randrange(-1000, 10**6)))
    if kind == 2:
        return rng.choice((0.5, -0.0, 1e308, 5e-324, math.inf, -math.inf, math.nan, 1e30, 3.0))
    if kind in (3, 4):
        return rng.choice(_TEXTS) if rng.random() < 0.7 else "".join(
            chr(rng.choice((rng.randrange(32, 127), rng.randrange(0x80, 0x3000)))) for _ in range(rng.randrange(12)))
    if kind == 5:
        return _DEEP
    if kind == 6:
        return [rng.randrange(-2, 10) for _ in range(rng.randrange(5))]
    if kind in (7, 8):
        return [hostile_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(_TEXTS[:24]): hostile_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def _paths(value, path=()):
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, path + (i,))


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        out = dict(value)
        out[head] = _replace(value[head], rest, new)
        return out
    out = list(value)
    out[head] = _replace(value[head], rest, new)
    return out


_DELETE = object()


def _edit(value, path, op):
    """Apply ``op(container_value) -> new value | _DELETE`` at ``path``."""
    if not path:
        return op(value)
    head, rest = path[0], path[1:]
    out = dict(value) if isinstance(value, dict) else list(value)
    new = _edit(value[head], rest, op)
    if new is _DELETE:
        del out[head]
    else:
        out[head] = new
    return out


def mutate_json(value, rng: random.Random, hostile=hostile_json):
    """One structured edit of a JSON-like tree: replace, delete or add a value anywhere.

    Strings that hold JSON themselves (safetensors metadata) are sometimes parsed,
    mutated and written back, so the inner checks are reached too.
    """
    paths = list(_paths(value))
    path, node = rng.choice(paths)
    roll = rng.random()
    if isinstance(node, str) and roll < 0.35:
        try:
            inner = json.loads(node)
        except (ValueError, RecursionError):
            inner = None
        if inner is not None and isinstance(inner, (dict, list)):
            new_inner = mutate_json(inner, rng, hostile)
            return _replace(value, path, _dumps(new_inner, compact=rng.random() < 0.8))
    if roll < 0.65 or not path:
        return _replace(value, path, hostile(rng))
    if roll < 0.8:
        return _edit(value, path, lambda _: _DELETE)
    # add a sibling: a new key in the parent map, or a new item in the parent list
    parent_path = path[:-1]

    def add(parent):
        if isinstance(parent, dict):
            out = dict(parent)
            out[rng.choice(_TEXTS[:30])] = hostile(rng)
            return out
        out = list(parent)
        out.insert(rng.randrange(len(out) + 1), hostile(rng))
        return out
    return _edit(value, parent_path, add)


def _dumps(value, *, compact: bool = True, sort: bool = True) -> str:
    text = json.dumps(value, sort_keys=sort, separators=(",", ":") if compact else None)
    return text.replace(json.dumps(_DEEP), "[" * 3000 + "]" * 3000)


def _dumps_any(value, rng: random.Random) -> str:
    try:
        return _dumps(value, compact=rng.random() < 0.8, sort=rng.random() < 0.9)
    except TypeError:  # mixed key types cannot be sorted
        return _dumps(value, compact=True, sort=False)


# -- safetensors-shaped formats (snapshot, shard, checkpoint) -------------------------------------

_POISON = [np.array(v, "<f4").tobytes() for v in (np.nan, np.inf, -np.inf, 1e30)] + \
          [np.array(v, "<f2").tobytes() * 2 for v in (np.nan, np.inf)]


def mutate_safetensors(data: bytes, rng: random.Random) -> bytes:
    """Mutate the JSON header (and the JSON inside its strings), or poison tensor values, keeping the framing valid."""
    n = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8:8 + n]), bytearray(data[8 + n:])
    roll = rng.random()
    if roll < 0.7:
        header = mutate_json(header, rng)
    elif roll < 0.9 and len(body) >= 4:
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(0, len(body) - 3) & ~3
            poison = rng.choice(_POISON)
            body[at:at + len(poison)] = poison
        body = body[:len(data) - 8 - n]
    else:
        cut = rng.randrange(len(body) + 1)
        body = body[:cut] if rng.random() < 0.5 else body + rng.randbytes(rng.randrange(1, 64))
    raw = _dumps_any(header, rng).encode("utf-8", "surrogatepass")
    if rng.random() < 0.8:
        raw += b" " * (-len(raw) % 8)
    size = len(raw) if rng.random() < 0.95 else rng.choice((0, len(raw) - 1, len(raw) + 1, 2**63, 2**64 - 1))
    return struct.pack("<Q", size) + raw + bytes(body)


# -- DAG-CBOR formats (manifest, ledger entry) ------------------------------------------------------


def _random_cid(rng: random.Random):
    from learnae.storage.cid import cid_of

    data = rng.randbytes(8)
    kind = rng.randrange(4)
    if kind == 0:
        return cid_of(data, "dag-pb", version=0)
    return cid_of(data, ("raw", "dag-pb", "dag-cbor")[kind - 1])


def hostile_ipld(rng: random.Random, depth: int = 0):
    """An IPLD value (what dag_cbor can encode) chosen to break schema checks."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice((None, True, False))
    if kind == 1:
        return rng.choice((0, 1, -1, 2**63 - 1, 2**63, 2**64 - 1, -(2**64), -(2**63), rng.randrange(-5, 10**9)))
    if kind == 2:
        return rng.choice((0.5, -0.0, 1e308, 5e-324, 1e30, 1.0))
    if kind == 3:
        return rng.choice(_TEXTS)
    if kind == 4:
        return rng.randbytes(rng.choice((0, 1, 32, 64, 65)))
    if kind == 5:
        return _random_cid(rng)
    if kind == 6:
        value = 0
        for _ in range(rng.choice((10, 200, 400))):
            value = [value]
        return value
    if kind == 7:
        return [hostile_ipld(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(_TEXTS[:30]): hostile_ipld(rng, depth + 1) for _ in range(rng.randrange(4))}


def mutate_ipld(value, rng: random.Random):
    """One structured edit of a decoded DAG-CBOR value (no JSON-in-strings here)."""
    paths = list(_paths(value))
    path, _ = rng.choice(paths)
    roll = rng.random()
    if roll < 0.65 or not path:
        return _replace(value, path, hostile_ipld(rng))
    if roll < 0.8:
        return _edit(value, path, lambda _: _DELETE)

    def add(parent):
        if isinstance(parent, dict):
            out = dict(parent)
            out[rng.choice(_TEXTS[:30])] = hostile_ipld(rng)
            return out
        out = list(parent)
        out.insert(rng.randrange(len(out) + 1), hostile_ipld(rng))
        return out
    return _edit(value, path[:-1], add)


def mutate_cbor(data: bytes, rng: random.Random) -> bytes:
    import dag_cbor

    value = mutate_ipld(dag_cbor.decode(data), rng)
    try:
        return dag_cbor.encode(value)
    except (ValueError, TypeError, RecursionError):  # outside the data model: fall back to bytes
        return mutate_bytes(data, rng)


# -- protobuf formats (dag-pb, Bitswap) --------------------------------------------------------------


def _pb_field(num: int, wt: int, value) -> bytes:
    from learnae.storage.dagpb import varint

    key = varint(num << 3 | wt)
    if wt == 0:
        return key + varint(int.from_bytes(value[:8], "little") if isinstance(value, bytes) else value)
    if wt == 2:
        return key + varint(len(value)) + value
    if wt == 1:
        return key + value[:8].ljust(8, b"\0")
    return key + value[:4].ljust(4, b"\0")


def _hostile_varint(rng: random.Random) -> int:
    return rng.choice((0, 1, 2, 5, 127, 128, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, rng.randrange(10**6)))


def _hostile_cid_bytes(rng: random.Random) -> bytes:
    roll = rng.randrange(5)
    if roll == 0:
        return bytes(_random_cid(rng))
    if roll == 1:
        return rng.randbytes(rng.choice((0, 1, 34, 36, 40)))
    if roll == 2:
        return b"\x01\x55\x13\x20" + rng.randbytes(32)  # sha2-512 code with a 32-byte digest
    if roll == 3:
        return b"\x01" + bytes([rng.randrange(256)]) * 3 + rng.randbytes(rng.randrange(40))
    return b"\x12\x20" + rng.randbytes(rng.choice((31, 32, 33)))


def random_unixfs(rng: random.Random) -> bytes:
    """A UnixFS Data message with hostile field values (or unknown fields)."""
    parts = []
    if rng.random() < 0.9:
        parts.append(_pb_field(1, 0, rng.choice((0, 1, 2, 3, 4, 5, 6, 2**63))))
    if rng.random() < 0.5:
        parts.append(_pb_field(2, 2, rng.randbytes(rng.randrange(64))))
    if rng.random() < 0.7:
        parts.append(_pb_field(3, 0, _hostile_varint(rng)))
    for _ in range(rng.randrange(6)):
        parts.append(_pb_field(4, 0, _hostile_varint(rng)))
    if rng.random() < 0.1:  # packed blocksizes
        from learnae.storage.dagpb import varint

        parts.append(_pb_field(4, 2, b"".join(varint(_hostile_varint(rng)) for _ in range(rng.randrange(4)))))
    if rng.random() < 0.1:
        parts.append(_pb_field(rng.randrange(5, 20), rng.choice((0, 1, 2, 5)), rng.randbytes(8)))
    rng.shuffle(parts)
    return b"".join(parts)


def mutate_dagpb(data: bytes, rng: random.Random) -> bytes:
    """A dag-pb node rebuilt with hostile links (hashes, names, Tsizes) and UnixFS data."""
    from learnae.storage.dagpb import decode_node

    try:
        node = decode_node(data)
        links = [(bytes(link.cid), link.name.encode(), link.tsize_bytes) for link in node.links]
        unixfs = node.data
    except Exception:  # noqa: BLE001 - a seed that is not a node: start empty
        links, unixfs = [], None
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.3:
            links.append((_hostile_cid_bytes(rng), rng.choice((b"", b"\xff\xfe", b"name")), _hostile_varint(rng)))
        elif roll < 0.45 and links:
            del links[rng.randrange(len(links))]
        elif roll < 0.55 and links:
            i = rng.randrange(len(links))
            links[i] = (links[i][0], links[i][1], _hostile_varint(rng))
        elif roll < 0.65 and links:
            links += [links[rng.randrange(len(links))]] * rng.randrange(1, 200)  # one block linked many times
        else:
            unixfs = random_unixfs(rng) if rng.random() < 0.8 else None
    body = []
    for h, name, tsize in links:
        parts = [_pb_field(1, 2, h), _pb_field(2, 2, name), _pb_field(3, 0, tsize)]
        if rng.random() < 0.05:
            parts = parts[1:]  # a link without a hash
        body.append(_pb_field(2, 2, b"".join(parts)))
    if unixfs is not None:
        body.append(_pb_field(1, 2, unixfs))
    if rng.random() < 0.05:
        body.append(_pb_field(rng.randrange(3, 9), rng.choice((0, 2)), rng.randbytes(4)))
    return b"".join(body)


def mutate_bitswap(data: bytes, rng: random.Random) -> bytes:
    """A Bitswap message built from hostile wants, blocks and presences."""
    parts = []
    if rng.random() < 0.6:
        entries = []
        for _ in range(rng.randrange(4)):
            fields = [_pb_field(1, 2, _hostile_cid_bytes(rng))] if rng.random() < 0.9 else []
            for num in (2, 3, 4, 5):
                if rng.random() < 0.5:
                    fields.append(_pb_field(num, 0, _hostile_varint(rng)))
            entries.append(_pb_field(1, 2, b"".join(fields)))
        if rng.random() < 0.3:
            entries.append(_pb_field(2, 0, _hostile_varint(rng)))
        parts.append(_pb_field(1, 2, b"".join(entries)))
    for _ in range(rng.randrange(3)):
        if rng.random() < 0.3:
            parts.append(_pb_field(2, 2, rng.randbytes(rng.randrange(64))))
        else:
            from learnae.storage.dagpb import varint

            prefix = b"".join(varint(_hostile_varint(rng) if rng.random() < 0.3 else v)
                              for v in (rng.choice((0, 1, 2)), rng.choice((0x55, 0x70, 0x71, 0x12)), 0x12, 32))
            block = _pb_field(1, 2, prefix) + _pb_field(2, 2, rng.randbytes(rng.randrange(64)))
            parts.append(_pb_field(3, 2, block))
    for _ in range(rng.randrange(3)):
        presence = _pb_field(1, 2, _hostile_cid_bytes(rng)) + _pb_field(2, 0, _hostile_varint(rng))
        parts.append(_pb_field(4, 2, presence))
    if rng.random() < 0.2:
        parts.append(_pb_field(5, 0, _hostile_varint(rng)))
    if rng.random() < 0.1:
        parts.append(_pb_field(rng.randrange(6, 30), rng.choice((0, 1, 2, 5)), rng.randbytes(8)))
    rng.shuffle(parts)
    return b"".join(parts)


# -- PEM (identity keys) --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _other_keys() -> tuple[bytes, ...]:
    """Valid PEM keys that are not Ed25519, and an encrypted one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, x25519
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def pem(key, enc=serialization.NoEncryption()):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)

    return (pem(ec.generate_private_key(ec.SECP256R1())), pem(x25519.X25519PrivateKey.generate()),
            pem(ed448.Ed448PrivateKey.generate()),
            pem(Ed25519PrivateKey.generate(), serialization.BestAvailableEncryption(b"pw")),
            Ed25519PrivateKey.generate().public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def mutate_pem(data: bytes, rng: random.Random) -> bytes:
    """A PEM whose DER body is mutated (and re-armoured), or another kind of key altogether."""
    if rng.random() < 0.2 or not data.startswith(b"-----BEGIN"):
        return rng.choice(_other_keys())
    lines = data.strip().split(b"\n")
    der = base64.b64decode(b"".join(lines[1:-1]))
    der = mutate_bytes(der, rng)
    body = base64.b64encode(der)
    head, tail = lines[0], lines[-1]
    if rng.random() < 0.1:
        head, tail = b"-----BEGIN EC PRIVATE KEY-----", b"-----END EC PRIVATE KEY-----"
    return b"\n".join([head, *(body[i:i + 64] for i in range(0, len(body), 64)), tail]) + b"\n"


# -- the targets ------------------------------------------------------------------------------------------


def _snapshot_seeds() -> tuple[tuple[bytes, ...], str]:
    from learnae.storage.snapshot import encode_snapshot, fingerprint

    rng = np.random.default_rng(0)
    names = ["000/dense/kernel", "001/dense/bias", "002/out/kernel"]
    ws = [rng.normal(size=(4, 3)).astype(np.float32), np.zeros(3, np.float32), rng.normal(size=(3, 2)).astype(np.float32)]
    seeds = tuple(encode_snapshot(ws, names, encoding=enc, step=step, metadata=meta)
                  for enc in ("float32", "float16", "int8")
                  for step, meta in ((0, None), (12345, {"loss": 0.25, "note": "é"})))
    return seeds, fingerprint(names, [w.shape for w in ws], ["float32"] * 3)


def _dataset(n: int, classes: int, seed: int):
    from learnae.data.datasets import Dataset

    rng = np.random.default_rng(seed)
    return Dataset(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, classes, n).astype(np.int64),
                   classes, f"fuzz-{seed}")


def _manifest_seeds() -> tuple[bytes, ...]:
    from learnae.data.manifest import ShardInfo, ShardManifest, encode_manifest
    from learnae.storage.cid import cid_of

    out = []
    for k in (1, 3):
        shards = tuple(ShardInfo(cid_of(b"shard %d" % i), 10, (4, 6)) for i in range(k))
        out.append(encode_manifest(ShardManifest(dataset="digits", partition="iid", seed=k, num_classes=2,
                                                 sample_shape=(8, 8, 1), shards=shards)))
    return tuple(out)


def _checkpoint_seeds() -> tuple[bytes, ...]:
    from safetensors.numpy import save

    out = []
    for n_opt in (0, 2):
        tensors = {"w/0000": np.ones((3, 2), np.float32), "w/0001": np.zeros(2, np.float32)}
        tensors.update({f"o/{i:04d}": np.full(3, i, np.float32) for i in range(n_opt)})
        meta = {"format": "learnae-checkpoint/1", "step": 40, "samples": 1280, "n_weights": 2, "n_optimizer": n_opt,
                "ledger_seq": 3, "ledger_head": "bafyreiexample", "extra": {"swarm": "s"}}
        out.append(save(tensors, metadata={"learnae": json.dumps(meta, sort_keys=True)}))
    return tuple(out)


def _identity_seeds() -> tuple[bytes, ...]:
    from learnae.identity import Identity

    ident = Identity.from_seed(bytes(range(32)))
    return ident.to_bytes("pem-pkcs8"), ident.to_bytes("libp2p-protobuf"), b"\x08\x01\x12\x20" + ident.seed


def _dag() -> tuple[dict, tuple[bytes, ...]]:
    """A small UnixFS file (3 raw leaves under one node), its blocks, and dag-pb seeds."""
    from learnae.storage.cid import cid_of
    from learnae.storage.dagpb import FILE, Link, encode_node, encode_unixfs
    from learnae.storage.unixfs import import_bytes

    blocks: dict = {}
    leaves = [bytes([i]) * (100 + i) for i in range(3)]
    links = []
    for leaf in leaves:
        cid = cid_of(leaf)
        blocks[cid] = leaf
        links.append(Link(cid, len(leaf)))
    node = encode_node(links, encode_unixfs(FILE, filesize=sum(map(len, leaves)), blocksizes=[len(x) for x in leaves]))
    blocks[cid_of(node, "dag-pb")] = node
    v0: dict = {}
    import_bytes(b"v0 leaf" * 40, lambda c, b: v0.setdefault(c, bytes(b)), cid_version=0)  # a dag-pb leaf
    return blocks, (node, *v0.values())


def _bitswap_seeds() -> tuple[bytes, ...]:
    from learnae.storage.bitswap.message import DONT_HAVE, WANT_HAVE, WantEntry, encode_message
    from learnae.storage.cid import cid_of

    c = cid_of(b"hello")
    return (encode_message(wants=[WantEntry(c, WANT_HAVE, send_dont_have=True), WantEntry(c, cancel=True)]),
            encode_message(blocks=[(c, b"hello")], presences=[(cid_of(b"x"), DONT_HAVE)]),
            encode_message(blocks=[(c, b"hello")], v100=True))


@functools.lru_cache(maxsize=1)
def targets() -> tuple[Target, ...]:
    """Every decoder under fuzz, with its seeds (built once)."""
    from learnae.data.manifest import decode_manifest
    from learnae.data.shards import InvalidShardError, decode_shard, encode_shard
    from learnae.errors import (FetchError, InvalidBlockError, InvalidEntryError, InvalidSnapshotError, KeyFileError,
                                StoreError)
    from learnae.identity import Identity
    from learnae.ledger.entry import decode_entry
    from learnae.peer.checkpoint import decode_checkpoint
    from learnae.storage.bitswap.message import decode_message
    from learnae.storage.blockstore import BlockNotFoundError
    from learnae.storage.cid import cid_of
    from learnae.storage.dagpb import decode_node, decode_unixfs
    from learnae.storage.snapshot import decode_snapshot
    from learnae.storage.unixfs import FileSizeGuard, read_file
    from tests.ledger.chains import ident, make_chain, raw_cid

    snap_seeds, fp = _snapshot_seeds()

    def snapshot(data: bytes):
        decode_snapshot(data)
        return decode_snapshot(data, fingerprint=fp)

    def dagpb(data: bytes):
        node = decode_node(data)
        return node, decode_unixfs(node.data or b"\x08\x02")

    blocks, pb_seeds = _dag()

    def get(cid):
        try:
            return blocks[cid]
        except KeyError:
            raise BlockNotFoundError(f"{cid} is not here") from None

    def unixfs(data: bytes):
        root = cid_of(data, "dag-pb")
        blocks[root] = data
        try:
            FileSizeGuard(root, 1 << 20).visit(root, len(data), data)
            return b"".join(read_file(root, get, max_bytes=1 << 20))
        finally:
            if data not in pb_seeds:
                del blocks[root]

    entries = [e.to_bytes() for n in (1, 2) for e in make_chain(ident(n), 4, parents=[raw_cid(b"p").set(codec="dag-cbor")])]
    entries.append(make_chain(ident(3), 1)[0].to_bytes())
    return (
        Target("snapshot", snap_seeds, snapshot, (InvalidSnapshotError,), mutate_safetensors),
        Target("shard", (encode_shard(_dataset(6, 3, 0)), encode_shard(_dataset(1, 1, 1))), decode_shard,
               (InvalidShardError,), mutate_safetensors),
        Target("manifest", _manifest_seeds(), decode_manifest, (InvalidShardError,), mutate_cbor),
        Target("checkpoint", _checkpoint_seeds(), decode_checkpoint, (StoreError,), mutate_safetensors),
        Target("identity", _identity_seeds(), Identity.from_bytes, (KeyFileError,), mutate_pem),
        Target("entry", tuple(entries), decode_entry, (InvalidEntryError,), mutate_cbor),
        Target("dag-pb", pb_seeds, dagpb, (InvalidBlockError,), mutate_dagpb),
        Target("unixfs", pb_seeds, unixfs, (InvalidBlockError, FetchError), mutate_dagpb),
        Target("bitswap", _bitswap_seeds(), lambda data: decode_message(data, verify=True), (InvalidBlockError,),
               mutate_bitswap),
    )


def make_case(target: Target, rng: random.Random) -> bytes:
    """One input for ``target``: random bytes (1/8), byte mutations (3/8) or a structured mutation (1/2)."""
    roll = rng.randrange(8)
    if roll == 0:
        return rng.randbytes(rng.randint(0, 600))
    seed = rng.choice(target.seeds)
    if roll <= 3:
        return mutate_bytes(seed, rng)
    return target.structured(seed, rng)


def outcome(target: Target, data: bytes) -> str:
    """``accepted``, ``unchanged`` (accepted, and a seed: a mutation that undid itself), or the
    rejection's reason (the class name when it has none). Other exceptions propagate."""
    try:
        target.decode(data)
    except target.errors as exc:
        return getattr(exc, "reason", None) or type(exc).__name__
    return "unchanged" if data in target.seeds else "accepted"


def run(cases: int, seed: int = 1, *, names: tuple[str, ...] | None = None) -> tuple[collections.Counter, dict]:
    """``cases`` inputs spread evenly over the targets; returns (counts by (target, outcome), examples of bugs)."""
    rng = random.Random(seed)
    chosen = [t for t in targets() if names is None or t.name in names]
    counts: collections.Counter = collections.Counter()
    bugs: dict = {}
    for i in range(cases):
        target = chosen[i % len(chosen)]
        data = make_case(target, rng)
        try:
            key = outcome(target, data)
        except Exception as exc:  # noqa: BLE001 - what the benchmark is looking for
            key = f"UNEXPECTED {type(exc).__name__}"
            bugs.setdefault((target.name, key), (data[:200], repr(exc)[:300]))
        counts[target.name, key] += 1
    return counts, bugs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=120_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="target names (default: all)")
    args = ap.parse_args()
    # dag_cbor decodes recursively: a deeply nested manifest ends in a RecursionError (a rejection),
    # and weakref callbacks of multiformats that fire at that depth fail too; Python prints those
    # ("Exception ignored") and goes on. Counted here instead of printed.
    unraisable: list = []
    sys.unraisablehook = unraisable.append  # a builtin: no Python frame, so it works at the recursion limit
    t = time.perf_counter()
    targets()
    setup = time.perf_counter() - t
    t = time.perf_counter()
    counts, bugs = run(args.cases, args.seed, names=tuple(args.only) if args.only else None)
    dt = time.perf_counter() - t
    unexpected = sum(n for (_, k), n in counts.items() if k.startswith("UNEXPECTED"))
    guarded = sum(n for (_, k), n in counts.items() if k == GUARD_REASON)
    print(f"{args.cases} cases in {dt:.1f} s ({args.cases / dt:.0f}/s; seeds built in {setup:.1f} s), "
          f"seed {args.seed}: unexpected exceptions {unexpected}, guard ({GUARD_REASON!r}) hits {guarded}")
    for name in dict.fromkeys(n for n, _ in counts):
        per = {k: v for (n, k), v in counts.items() if n == name}
        print(f"\n{name}: {sum(per.values())} cases")
        for key, n in sorted(per.items(), key=lambda kv: -kv[1]):
            print(f"  {key:<28} {n}")
    if unraisable:
        ignored = collections.Counter(type(u.exc_value).__name__ for u in unraisable)
        print(f"\nexceptions Python ignored in weakref callbacks at that depth (not raised by any decoder): "
              f"{dict(ignored)}")
    for (name, key), (data, exc) in bugs.items():
        print(f"\n{name} {key}: {exc}\n  input: {data!r}")
    raise SystemExit(1 if unexpected or guarded else 0)


if __name__ == "__main__":
    main()
