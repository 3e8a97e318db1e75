"""The entry codec: determinism, IPLD compatibility, and every rejection reason."""

from __future__ import annotations

import dag_cbor
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multiformats import CID, multihash

from learnae.errors import InvalidEntryError
from learnae.identity import verify_signature
from learnae.ledger import cbor
from learnae.ledger.entry import MAX_ENTRY_BYTES, Entry, decode_entry, now_ms, sign_entry
from tests.ledger.chains import SWARM, ident, make_chain, raw_cid
from tests.ledger.fuzz import run_fuzz


def reason_of(data: bytes, **kw) -> str:
    with pytest.raises(InvalidEntryError) as info:
        decode_entry(data, **kw)
    return info.value.reason


def resign(d: dict, identity) -> bytes:
    """Encode an arbitrary entry map with a valid signature (to reach checks after the signature)."""
    d = dict(d)
    d.pop("sig", None)
    d["sig"] = identity.sign(dag_cbor.encode(d))
    return dag_cbor.encode(d)


def test_round_trip_is_deterministic_and_ipld(alice):
    chain = make_chain(alice, 4, parents=[raw_cid(b"x").set(codec="dag-cbor")])
    for e in chain:
        data = e.to_bytes()
        # the reference encoder produces the very same bytes, and the CID is the standard one
        assert dag_cbor.encode(dag_cbor.decode(data)) == data
        assert e.cid == CID("base32", 1, "dag-cbor", multihash.digest(data, "sha2-256"))
        back = decode_entry(data)
        assert back == e and back.cid == e.cid and back.body == e.body
        assert verify_signature(alice.peer_id, back.signing_bytes(), back.sig)
        # rebuilt from fields, it encodes to the same bytes
        fresh = Entry(e.v, e.swarm, e.author, e.seq, e.prev, e.ts, e.kind, e.body, e.sig)
        assert fresh.to_bytes() == data and fresh.cid == e.cid
    snap = dag_cbor.decode(chain[2].to_bytes())
    assert isinstance(snap["prev"], CID) and isinstance(snap["body"]["model"], CID)
    assert isinstance(snap["body"]["parents"][0]["entry"], CID)


def test_prev_links_the_chain(alice):
    chain = make_chain(alice, 3)
    assert chain[0].prev is None
    assert chain[1].prev == chain[0].cid and chain[2].prev == chain[1].cid


def test_oversize_rejected(alice):
    big = {"fingerprint": "f", "framework": "k", "addrs": ["a" * 1000] * 32}
    e = sign_entry(alice, swarm=SWARM, seq=0, prev=None, kind="join", body=big)
    assert reason_of(e.to_bytes() + b"\0" * (MAX_ENTRY_BYTES)) == "oversize"


def test_undecodable_and_non_canonical(alice):
    data = make_chain(alice, 1)[0].to_bytes()
    assert reason_of(b"") == "undecodable"
    assert reason_of(b"\xff\x00") == "undecodable"
    assert reason_of(data[:-3]) == "undecodable"
    assert reason_of(data + b"\x00") == "undecodable"
    assert reason_of("text") == "undecodable"
    # the same map with an integer in a longer-than-needed form: v = 1 as 0x18 0x01
    assert data[:4] == b"\xa9\x61v\x01"
    assert reason_of(b"\xa9\x61v\x18\x01" + data[4:]) == "non-canonical"
    # keys out of canonical order
    assert reason_of(b"\xa2\x62bb\x01\x61a\x01") == "non-canonical"
    assert reason_of(b"\xa2\x61a\x01\x61a\x02") == "non-canonical"  # duplicate key
    assert reason_of(b"\xbf\xff") == "non-canonical"  # indefinite-length map


def test_schema_rejections(alice, bob):
    e = make_chain(alice, 3)[2]
    base = dag_cbor.decode(e.to_bytes())
    assert reason_of(resign({**base, "v": 2}, alice)) == "bad-version"
    no_swarm = {k: v for k, v in base.items() if k != "swarm"}
    assert reason_of(resign(no_swarm, alice)) == "bad-schema"
    assert reason_of(resign({**base, "extra": 1}, alice)) == "bad-schema"
    assert reason_of(resign({**base, "seq": "2"}, alice)) == "bad-schema"
    assert reason_of(resign({**base, "seq": True}, alice)) == "bad-schema"
    assert reason_of(resign({**base, "prev": None}, alice)) == "bad-schema"
    assert reason_of(resign({**base, "kind": "vote"}, alice)) == "bad-schema"
    assert reason_of(resign({**base, "kind": "leave"}, alice)) == "bad-schema"  # body of a snapshot
    body = dict(base["body"])
    body["step"] = -1
    assert reason_of(resign({**base, "body": body}, alice)) == "bad-schema"
    body = {**base["body"], "parents": [{"entry": raw_cid(b"m"), "weight": 1.0}]}  # not an entry link
    assert reason_of(resign({**base, "body": body}, alice)) == "bad-schema"
    assert reason_of(resign({**base, "author": "QmNotAPeer"}, alice)) == "bad-author"
    # a valid structure signed by someone else than the author
    assert reason_of(resign(base, bob)) == "bad-signature"
    with pytest.raises(InvalidEntryError) as info:
        sign_entry(alice, swarm=SWARM, seq=1, prev=None, kind="leave", body={"reason": ""})
    assert info.value.reason == "bad-schema"


def test_future_timestamp(alice):
    e = sign_entry(alice, swarm=SWARM, seq=0, prev=None, kind="leave", body={"reason": "x"},
                   ts=now_ms() + 3_600_000)
    assert reason_of(e.to_bytes()) == "future-timestamp"
    assert decode_entry(e.to_bytes(), verify=False) == e


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_one_byte_change_is_rejected(data):
    entries = make_chain(ident(7), 3, parents=[raw_cid(b"p").set(codec="dag-cbor")])
    raw = data.draw(st.sampled_from(entries)).to_bytes()
    i = data.draw(st.integers(0, len(raw) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    changed = raw[:i] + bytes([new]) + raw[i + 1:]
    with pytest.raises(InvalidEntryError):
        decode_entry(changed)


ipld = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20) | st.binary(max_size=20)
    | st.builds(lambda b: raw_cid(b), st.binary(max_size=4)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=ipld)
def test_strict_decoder_agrees_with_dag_cbor(value):
    data = dag_cbor.encode(value)
    assert cbor.decode(data) == dag_cbor.decode(data)


@settings(max_examples=300, deadline=None)
@given(value=ipld, i=st.integers(0, 10**6), b=st.integers(0, 255))
def test_strict_decoder_accepts_only_canonical_bytes(value, i, b):
    data = bytearray(dag_cbor.encode(value))
    data[i % len(data)] = b
    try:
        decoded = cbor.decode(bytes(data))
    except cbor.CborError:
        return
    assert dag_cbor.encode(decoded) == bytes(data)  # accepted means canonical


def test_decoder_fuzz_never_crashes(alice):
    seeds = [e.to_bytes() for e in make_chain(alice, 4, parents=[raw_cid(b"p").set(codec="dag-cbor")])]
    counts = run_fuzz(decode_entry, seeds, 3000, seed=1)
    assert sum(counts.values()) == 3000
    assert counts.get("ok", 0) == 0  # no mutated entry is ever accepted


@settings(max_examples=60, deadline=None)
@given(msg=st.binary(max_size=64), flip=st.integers(0, 63 * 8), who=st.integers(0, 3))
def test_cached_verifier_agrees_with_identity_verify_signature(msg, flip, who):
    from learnae.ledger.entry import _verify

    signer, claimed = ident(20), ident(20 + who)
    sig = bytearray(signer.sign(msg))
    if who == 0:  # sometimes a good signature, sometimes one flipped bit
        pass
    else:
        sig[flip // 8] ^= 1 << (flip % 8)
    sig = bytes(sig)
    assert _verify(claimed.peer_id, msg, sig) == verify_signature(claimed.peer_id, msg, sig)
    assert _verify("not-a-peer-id", msg, sig) is False
