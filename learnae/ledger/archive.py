"""Moving a ledger as a CAR file: export (entries, optionally snapshot blocks) and import.

An export holds every stored entry, each author's chain in ``seq`` order, with
the chain heads as CAR roots, in the CARv1 layout ``ipfs dag import`` reads
(then ``ipfs dag get <root>/prev/prev`` walks a chain). Snapshot blocks (the UnixFS DAGs the
snapshot entries link to) are added when the caller gives a block getter.
An import verifies every block against its CID and every entry as if it came
from the network (:meth:`Ledger.receive`).

Example:
    >>> # led.export_car("swarm.car"); other.import_car("swarm.car").accepted
"""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from multiformats import CID

from learnae.errors import UserError
from learnae.fsutil import atomic_write
from learnae.ledger.car import read_car, write_car
from learnae.ledger.cbor import cid_from_bytes
from learnae.ledger.verify import block_cid_ok

__all__ = ["ImportReport", "export_car", "import_car", "collect_blocks", "dag_pb_links"]


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did: entry outcomes by status, rejections by reason, other blocks."""

    statuses: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    other_blocks: int = 0       # non-entry blocks (snapshots): stored via put_block, or skipped
    bad_blocks: int = 0         # blocks whose bytes do not hash to their CID

    @property
    def accepted(self) -> int:
        return self.statuses.get("accepted", 0)

    def to_json(self) -> dict:
        return {"statuses": self.statuses, "rejected": self.rejected, "other_blocks": self.other_blocks,
                "bad_blocks": self.bad_blocks}


def export_car(ledger, path: Path | str, *, extra_blocks: Iterable[tuple[CID, bytes]] = ()) -> int:
    """Write the ledger's entries (then ``extra_blocks``) to ``path`` atomically; return blocks written.

    Raises:
        UserError: the ledger is empty (a CAR needs at least one root for go-car and Kubo).
    """
    roots = ledger.heads()
    if not roots:
        raise UserError(f"{ledger.dir}: the ledger is empty; there is nothing to export")
    buf = io.BytesIO()
    seen = set()

    def blocks():
        for cid, data in ledger.raw_entries():
            seen.add(cid)
            yield cid, data
        for cid, data in extra_blocks:
            if cid not in seen:
                seen.add(cid)
                yield cid, data

    n = write_car(buf, roots, blocks())
    atomic_write(Path(path), buf.getvalue())
    return n


def import_car(ledger, path: Path | str, *, put_block: Callable[[CID, bytes], object] | None = None) -> ImportReport:
    """Receive every entry of a CAR file; hand other verified blocks to ``put_block``.

    Raises:
        UserError: the file is missing or is not a CARv1 file.
    """
    from learnae.ledger.entry import decode_entry
    from learnae.errors import InvalidEntryError

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the CAR file ({exc.strerror})") from None
    _, sections = read_car(data, name=str(path))
    entries, statuses, rejected = [], {}, {}
    other = bad = 0
    for cid, block in sections:
        if not block_cid_ok(cid, block):
            bad += 1
            continue
        if cid.codec.code == 0x71:
            try:
                entries.append(decode_entry(block))
            except InvalidEntryError as exc:
                rejected[exc.reason] = rejected.get(exc.reason, 0) + 1
            continue
        other += 1
        if put_block is not None:
            put_block(cid, block)
    entries.sort(key=lambda e: e.seq)  # every prev before its successor: nothing waits in holding
    with ledger.index:
        for e in entries:
            res = ledger.receive(e)
            for r in (res, *res.released):
                statuses[r.status.value] = statuses.get(r.status.value, 0) + 1
                if r.reason:
                    rejected[r.reason] = rejected.get(r.reason, 0) + 1
    ledger.sync()
    return ImportReport(statuses, rejected, other, bad)


def dag_pb_links(block: bytes) -> list[CID]:
    """The link CIDs of a dag-pb node (protobuf field 2, each a PBLink whose field 1 is the CID)."""
    from learnae.ledger.car import decode_varint

    out, pos = [], 0
    while pos < len(block):
        key, pos = decode_varint(block, pos)
        wire = key & 7
        if wire == 0:
            _, pos = decode_varint(block, pos)
            continue
        if wire != 2:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        size, pos = decode_varint(block, pos)
        value, pos = block[pos:pos + size], pos + size
        if key >> 3 == 2:  # a PBLink
            p = 0
            while p < len(value):
                k, p = decode_varint(value, p)
                if k & 7 == 0:
                    _, p = decode_varint(value, p)
                    continue
                n, p = decode_varint(value, p)
                if k >> 3 == 1:
                    out.append(cid_from_bytes(value[p:p + n]))
                p += n
    return out


async def collect_blocks(roots: Iterable[CID], get_block: Callable) -> list[tuple[CID, bytes]]:
    """Every block of the DAGs under ``roots`` (raw and dag-pb; UnixFS files), via ``get_block``.

    ``get_block(cid)`` may return bytes or an awaitable of bytes (a Store's).
    Blocks are checked against their CIDs.

    Raises:
        LearnaeError: whatever ``get_block`` raises for a block it does not have.
    """
    from learnae.errors import InvalidBlockError

    out, seen, stack = [], set(), list(roots)
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        data = get_block(cid)
        if inspect.isawaitable(data):
            data = await data
        data = bytes(data)
        if not block_cid_ok(cid, data):
            raise InvalidBlockError(f"block {cid} does not match its CID")
        out.append((cid, data))
        if cid.codec.code == 0x70:
            stack.extend(dag_pb_links(data))
    return out
