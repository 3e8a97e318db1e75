"""The Ledger: own chain, receiving, holding, forks, index rebuild, fetching missing entries."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learnae.errors import StoreError, UserError
from learnae.ledger import Ledger, Status
from learnae.ledger.entry import decode_entry, sign_entry
from tests.ledger.chains import SWARM, ident, make_chain, raw_cid


def snapshot_body(tag: str, parents=()):
    return {"model": raw_cid(tag.encode()), "step": 1, "samples": 10, "metrics": {"loss": 0.5},
            "parents": [{"entry": p, "weight": 0.5} for p in parents]}


def test_append_is_durable_and_resumes(tmp_path, alice):
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        e0 = led.append("join", {"fingerprint": "ff", "framework": "keras", "addrs": []})
        e1 = led.append("snapshot", snapshot_body("m1"))
        assert (e0.seq, e1.seq, e1.prev) == (0, 1, e0.cid)
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        assert led.next_seq == 2 and led.head == e1.cid
        e2 = led.append("leave", {"reason": "done"})
        assert e2.prev == e1.cid and e2.ts >= e1.ts
        assert [e.seq for e in led.entries(author=alice.peer_id)] == [0, 1, 2]
        assert led.latest_snapshot(alice.peer_id) == e1


def test_ledger_of_another_key_is_refused(tmp_path, alice, bob):
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        led.append("leave", {"reason": "x"})
    (tmp_path / "ledger" / "index.sqlite").unlink()
    with pytest.raises(Exception, match="not of this key"):
        Ledger.open(tmp_path, bob, swarm=SWARM)


def test_receive_outcomes(tmp_path, alice, bob):
    chain = make_chain(bob, 3)
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        assert led.receive(chain[0].to_bytes()).status is Status.ACCEPTED
        assert led.receive(chain[0]).status is Status.DUPLICATE
        assert led.receive(chain[2]).status is Status.HELD
        assert led.receive(chain[2]).status is Status.DUPLICATE
        res = led.receive(chain[1])
        assert res.status is Status.ACCEPTED
        assert [r.cid for r in res.released] == [chain[2].cid] and len(led.holding) == 0
        bad = bytearray(chain[1].to_bytes())
        bad[-1] ^= 1
        res = led.receive(bytes(bad))
        assert (res.status, res.reason) == (Status.REJECTED, "bad-signature")
        other = sign_entry(bob, swarm="other", seq=0, prev=None, kind="leave", body={"reason": "x"})
        assert led.receive(other).reason == "wrong-swarm"
        # prev points at an entry of another author: breaks the chain
        mine = led.append("leave", {"reason": "x"})
        wrong = sign_entry(bob, swarm=SWARM, seq=3, prev=mine.cid, kind="leave", body={"reason": "y"})
        assert led.receive(wrong).reason == "bad-chain"
        assert led.rejected == {"bad-signature": 1, "wrong-swarm": 1, "bad-chain": 1}
        assert len(led) == 4


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_any_reordering_is_accepted_after_reassembly(tmp_path_factory, seed):
    a, b = ident(11), ident(12)
    ca = make_chain(a, 5)
    cb = make_chain(b, 4, parents=[ca[2].cid])
    everything = ca + cb
    shuffled = everything[:]
    random.Random(seed).shuffle(shuffled)
    with Ledger.open(tmp_path_factory.mktemp("l"), ident(13), swarm=SWARM) as led:
        statuses = []
        for e in shuffled:
            res = led.receive(e)
            statuses += [res.status, *(r.status for r in res.released)]
        assert statuses.count(Status.ACCEPTED) == len(everything)
        assert len(led.holding) == 0 and len(led) == len(everything)
        for author, chain in ((a, ca), (b, cb)):
            assert led.entries(author=author.peer_id) == chain


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.integers(0, 3), reason=st.text(min_size=1, max_size=20), first_then_second=st.booleans())
def test_equivocation_produces_a_fork_proof(tmp_path_factory, seq, reason, first_then_second):
    eve = ident(66)
    chain = make_chain(eve, 4)
    twin = sign_entry(eve, swarm=SWARM, seq=seq, prev=chain[seq].prev, kind="leave",
                      body={"reason": reason}, ts=chain[seq].ts + 1)
    assert twin.cid != chain[seq].cid
    with Ledger.open(tmp_path_factory.mktemp("l"), ident(13), swarm=SWARM) as led:
        for e in chain[:seq]:
            led.receive(e)
        pair = (chain[seq], twin) if first_then_second else (twin, chain[seq])
        assert led.receive(pair[0]).status is Status.ACCEPTED
        res = led.receive(pair[1])
        assert res.status is Status.FORK and res.proof.check()
        assert {res.proof.first.cid, res.proof.second.cid} == {chain[seq].cid, twin.cid}
        assert led.is_forked(eve.peer_id) and len(led.fork_proofs()) == 1
        if seq < 3:  # its later work is no longer accepted
            assert led.receive(chain[seq + 1]).reason == "forked-author"


def test_fork_stops_credit_and_survives_index_rebuild(tmp_path, alice):
    eve, bob = ident(66), ident(2)
    ce = make_chain(eve, 5)
    cb = make_chain(bob, 3, parents=[ce[3].cid])  # bob merged eve's seq-3 snapshot
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        for e in ce + cb:
            assert led.receive(e).status is Status.ACCEPTED
        before = {c.author: c for c in led.credits()}
        assert before[eve.peer_id].merged == 1 and before[eve.peer_id].samples == 400
        twin = sign_entry(eve, swarm=SWARM, seq=3, prev=ce[2].cid, kind="leave", body={"reason": "x"})
        assert led.receive(twin).status is Status.FORK
        after = {c.author: c for c in led.credits()}
        e_credit = after[eve.peer_id]
        assert e_credit.forked and e_credit.fork_seq == 3 and e_credit.merged == 0
        assert e_credit.samples == 200 and e_credit.score < before[eve.peer_id].score
        assert after[bob.peer_id] == before[bob.peer_id]
    (tmp_path / "ledger" / "index.sqlite").unlink()
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        assert {c.author: c for c in led.credits()} == after
        assert len(led) == len(ce) + len(cb) + 1 and len(led.fork_proofs()) == 1


def test_foreign_entry_in_own_name_is_rejected(tmp_path, alice):
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        e0 = led.append("leave", {"reason": "a"})
        forged = sign_entry(alice, swarm=SWARM, seq=1, prev=e0.cid, kind="leave", body={"reason": "b"})
        assert led.receive(forged).reason == "unknown-own-entry"
        twin = sign_entry(alice, swarm=SWARM, seq=0, prev=None, kind="leave", body={"reason": "c"})
        assert led.receive(twin).status is Status.FORK  # someone else holds our key: proof kept
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:  # reopened: our chain goes on from our own entry
        assert led.head == e0.cid and led.append("leave", {"reason": "next"}).prev == e0.cid


def test_holding_area_is_bounded(tmp_path, alice):
    chains = [make_chain(ident(100 + i), 3) for i in range(5)]
    with Ledger.open(tmp_path, alice, swarm=SWARM, max_held=3) as led:
        for c in chains:
            assert led.receive(c[2]).status is Status.HELD
        assert len(led.holding) == 3 and led.holding.evicted == 2
        # the newest held entries are still released once their chain arrives
        led.receive(chains[4][0])
        assert led.receive(chains[4][1]).released[0].cid == chains[4][2].cid


async def test_missing_prev_is_fetched_through_the_hook(tmp_path, alice, bob):
    chain = make_chain(bob, 6)
    store = {e.cid: e.to_bytes() for e in chain}
    store[chain[1].cid] = b"\xa0"  # a block that does not match its CID is refused
    asked = []

    async def fetch_block(cid):
        asked.append(cid)
        await trio.sleep(0)
        return store[cid]

    with Ledger.open(tmp_path, alice, swarm=SWARM, fetch_block=fetch_block) as led:
        assert led.receive(chain[5]).status is Status.HELD
        await led.fill_gaps(timeout_s=5)
        assert led.rejected.get("cid-mismatch") == 1 and len(led) == 0
        store[chain[1].cid] = chain[1].to_bytes()
        await led.fill_gaps(timeout_s=5)
        assert [e.seq for e in led.entries(author=bob.peer_id)] == [0, 1, 2, 3, 4, 5]
        assert len(led.holding) == 0


def test_torn_tail_is_dropped_on_open(tmp_path, alice):
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        for i in range(3):
            led.append("leave", {"reason": str(i)})
    log_path = tmp_path / "ledger" / "own.log"
    whole = log_path.read_bytes()
    log_path.write_bytes(whole + whole[: len(whole) // 3 // 2])  # half a record
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        assert led.next_seq == 3 and log_path.stat().st_size == len(whole)
        assert led.append("leave", {"reason": "again"}).seq == 3
        assert all(decode_entry(d) for _, d in led.raw_entries())


def test_a_full_index_disk_raises_enospc_and_the_chain_resumes_intact(tmp_path, alice):
    """SQLite's "database or disk is full" is the same OSError as any full write (one CLI line, exit 1)."""
    import errno

    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        led.append("join", {"fingerprint": "ff", "framework": "keras", "addrs": []})
        pages = led.index.db.execute("PRAGMA page_count").fetchone()[0]
        led.index.db.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own way to run out of room
        with pytest.raises(OSError) as raised:
            for i in range(10_000):
                led.append("snapshot", snapshot_body(f"m{i}"))
        assert raised.value.errno == errno.ENOSPC and raised.value.filename.endswith("index.sqlite")
        written = led.next_seq
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:  # space is back: the chain is whole and goes on
        assert [e.seq for e in led.entries(author=alice.peer_id)] == list(range(written))
        assert led.append("snapshot", snapshot_body("after")).seq == written


def test_index_is_rebuilt_when_damaged_and_readers_never_write(tmp_path, alice, bob):
    chain = make_chain(bob, 4)
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        for e in chain:
            led.receive(e)
        led.append("leave", {"reason": "x"})
        credits = led.credits()
        # a second writer is refused while the first holds the ledger; readers are fine
        with pytest.raises(UserError, match="in use"):
            Ledger.open(tmp_path, alice)
        with Ledger.open(tmp_path, readonly=True) as reader:
            assert len(reader) == 5
    db = tmp_path / "ledger" / "index.sqlite"
    for suffix in ("-wal", "-shm"):
        (tmp_path / "ledger" / f"index.sqlite{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ledger").iterdir()}
    with Ledger.open(tmp_path, readonly=True) as reader:  # builds an in-memory index, touches nothing
        assert reader.credits() == credits
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ledger").iterdir()} == before
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:  # the writer rebuilds the file
        assert led.credits() == credits and led.next_seq == 1


def test_damage_in_the_middle_of_a_log_is_not_mistaken_for_a_torn_tail(tmp_path, alice):
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        for i in range(3):
            led.append("leave", {"reason": str(i)})
    path = tmp_path / "ledger" / "own.log"
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # inside the first record: two good records follow
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged"):
        Ledger.open(tmp_path, alice, swarm=SWARM)
    assert path.read_bytes() == bytes(data)  # nothing was truncated away


def test_unverified_or_malformed_entry_objects_are_checked(tmp_path, alice, bob):
    from learnae.ledger.entry import Entry

    good = make_chain(bob, 1)[0]
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        forged = Entry(good.v, good.swarm, good.author, good.seq, good.prev, good.ts, good.kind,
                       {"reason": "changed"}, good.sig)
        assert led.receive(forged).reason == "bad-schema"  # join body swapped for a leave body
        forged = Entry(good.v, good.swarm, good.author, good.seq, good.prev, good.ts, "leave",
                       {"reason": "changed"}, good.sig)
        assert led.receive(forged).reason == "bad-signature"
        weird = Entry(1, SWARM, bob.peer_id, 0, None, 1, "leave", {"reason": object()}, b"\0" * 64)
        assert led.receive(weird).reason == "bad-schema"
        rebuilt = Entry(good.v, good.swarm, good.author, good.seq, good.prev, good.ts, good.kind, good.body, good.sig)
        assert led.receive(rebuilt).status is Status.ACCEPTED


def test_equivocation_is_detected_before_its_chain_arrives(tmp_path, alice):
    # A peer that missed an author's history (it was partitioned away, or joined late) gets two
    # different entries at one seq whose predecessor it does not hold yet: still a fork.
    eve = ident(66)
    chain = make_chain(eve, 6)
    twin = sign_entry(eve, swarm=SWARM, seq=4, prev=chain[4].prev, kind="leave", body={"reason": "twin"},
                      ts=chain[4].ts + 1)
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        assert led.receive(chain[4]).status is Status.HELD
        res = led.receive(twin)
        assert res.status is Status.FORK and res.proof.check()
        assert led.is_forked(eve.peer_id) and len(led.holding) == 0
        assert led.receive(chain[5]).reason == "forked-author"
        for e in chain[:4]:  # the history before the fork still arrives and is accepted
            assert led.receive(e).status is Status.ACCEPTED
        assert len(led.fork_proofs()) == 1
    proc = subprocess.run([sys.executable, "-m", "learnae.cli.main", "ledger", "verify", str(tmp_path),
                           "--format", "json"], capture_output=True, text=True, timeout=60)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"], report
    assert [f["author"] for f in report["forks"]] == [eve.peer_id]
    (tmp_path / "ledger" / "index.sqlite").unlink()
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:  # the proof survives an index rebuild
        assert led.is_forked(eve.peer_id) and len(led) == 6


def test_a_peer_recovering_its_chain_takes_back_the_entries_it_signed(tmp_path, alice):
    other = tmp_path / "backup"
    with Ledger.open(other, alice, swarm=SWARM) as led:  # the chain as the swarm knows it
        chain = [led.append("leave", {"reason": str(i)}) for i in range(3)]
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:  # a data dir that lost the last two
        assert led.append("leave", {"reason": "0"}, ts=chain[0].ts).cid == chain[0].cid
        assert led.receive(chain[2]).reason == "unknown-own-entry"  # not while running normally
        led.recovering = True
        assert led.receive(chain[2]).status is Status.HELD  # waits for seq 1...
        res = led.receive(chain[1])
        assert res.status is Status.ACCEPTED and [r.cid for r in res.released] == [chain[2].cid]
        assert led.head == chain[2].cid and led.next_seq == 3  # ...and the next append is seq 3, not a fork
        led.recovering = False
        assert led.append("leave", {"reason": "3"}).prev == chain[2].cid
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:  # durable: in own.log
        assert led.head is not None and led.next_seq == 4 and not led.fork_proofs()


def test_one_fork_proof_per_author_is_kept(tmp_path, alice):
    bob = ident(7)
    with Ledger.open(tmp_path, alice, swarm=SWARM) as led:
        e0 = sign_entry(bob, swarm=SWARM, seq=0, prev=None, kind="leave", body={"reason": "a"})
        led.receive(e0)
        size = (tmp_path / "ledger" / "received.log").stat().st_size
        twins = [sign_entry(bob, swarm=SWARM, seq=0, prev=None, kind="leave", body={"reason": f"t{i}"})
                 for i in range(400)]
        statuses = [led.receive(t).status for t in twins]
        assert statuses[0] is Status.FORK and set(statuses[1:]) == {Status.DUPLICATE}
        assert len(led.fork_proofs()) == 1
        assert (tmp_path / "ledger" / "received.log").stat().st_size - size < 100_000
