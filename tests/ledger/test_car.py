"""CARv1 export/import and whole-ledger verification."""

from __future__ import annotations

import dag_cbor
import pytest

from learnae.ledger import Ledger, verify_blocks
from learnae.ledger.archive import collect_blocks
from learnae.ledger.car import CarFormatError, decode_varint, read_car
from learnae.ledger.cbor import dag_cbor_cid
from learnae.ledger.entry import sign_entry
from tests.ledger.chains import SWARM, ident, make_chain, raw_cid


def filled(tmp_path, name="a"):
    led = Ledger.open(tmp_path / name, ident(1), swarm=SWARM)
    for i in range(3):
        led.append("leave" if i == 2 else "shard",
                   {"reason": "bye"} if i == 2 else {"shard": raw_cid(b"s%d" % i), "samples": 5, "classes": {}})
    for e in make_chain(ident(2), 4) + make_chain(ident(3), 3):
        led.receive(e)
    return led


def test_export_import_round_trip(tmp_path):
    led = filled(tmp_path)
    car = tmp_path / "x.car"
    assert led.export_car(car) == 10
    data = car.read_bytes()
    # the header is plain DAG-CBOR {roots, version: 1}, readable by any IPLD tool
    n, pos = decode_varint(data, 0)
    header = dag_cbor.decode(data[pos:pos + n])
    assert header["version"] == 1 and set(header["roots"]) == set(led.heads())
    roots, blocks = read_car(data)
    blocks = list(blocks)
    assert {c for c, _ in blocks} == {c for c, _ in led.raw_entries()}
    assert verify_blocks(blocks).ok
    with Ledger.open(tmp_path / "b", ident(4), swarm=SWARM) as other:
        report = other.import_car(car)
        assert report.accepted == 10 and report.bad_blocks == 0
        assert sorted(d for _, d in other.raw_entries()) == sorted(d for _, d in led.raw_entries())
        assert other.import_car(car).statuses == {"duplicate": 10}
    led.close()


def test_tampered_car_is_caught(tmp_path):
    led = filled(tmp_path)
    car = tmp_path / "x.car"
    led.export_car(car)
    led.close()
    data = bytearray(car.read_bytes())
    data[-5] ^= 0xFF  # inside the last block
    car.write_bytes(bytes(data))
    report = verify_blocks(list(read_car(bytes(data))[1]))
    assert not report.ok and report.problems[0].reason in ("cid-mismatch", "bad-signature", "undecodable")
    with Ledger.open(tmp_path / "c", ident(4), swarm=SWARM) as other:
        assert other.import_car(car).bad_blocks == 1
    with pytest.raises(CarFormatError):
        read_car(b"\x05garbage")


def test_verify_reports_the_first_broken_link():
    chain = make_chain(ident(2), 5)
    blocks = [(e.cid, e.to_bytes()) for e in chain]
    assert verify_blocks(blocks).ok
    report = verify_blocks(blocks[:2] + blocks[3:])  # seq 2 missing
    assert not report.ok
    first = report.problems[0]
    assert (first.seq, first.reason) == (3, "missing-prev")
    twin = sign_entry(ident(2), swarm=SWARM, seq=4, prev=chain[3].cid, kind="leave", body={"reason": "x"})
    forked = verify_blocks(blocks + [(twin.cid, twin.to_bytes())])
    assert forked.ok and len(forked.forks) == 1  # a fork is a proof, not a broken ledger
    assert not verify_blocks(blocks + [(twin.cid, twin.to_bytes())], linear_authors=[ident(2).peer_id]).ok


async def test_snapshot_blocks_are_collected_through_dag_pb_links():
    leaf1, leaf2 = b"a" * 10, b"b" * 10
    c1, c2 = raw_cid(leaf1), raw_cid(leaf2)

    def link(c):  # PBLink {Hash: cid}
        raw = bytes(c)
        inner = b"\x0a" + bytes([len(raw)]) + raw
        return b"\x12" + bytes([len(inner)]) + inner

    root = link(c1) + link(c2) + b"\x0a\x02\x08\x02"  # two links, then Data
    from multiformats import CID, multihash

    root_cid = CID("base32", 1, "dag-pb", multihash.digest(root, "sha2-256"))
    store = {root_cid: root, c1: leaf1, c2: leaf2}

    async def get_block(cid):
        return store[cid]

    got = dict(await collect_blocks([root_cid], get_block))
    assert got == store
    assert dag_cbor_cid(b"\xa0").codec.name == "dag-cbor"
