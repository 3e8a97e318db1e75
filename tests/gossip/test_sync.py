"""The ledger sync protocol between two real py-libp2p hosts on 127.0.0.1, with real ledgers.

A client that missed history (it joined late, or was down or cut off) gets every
author's complete chain, more than one batch of it, and learns of an equivocation
it never saw; a server that sends garbage or more than was asked for cannot make
the client store anything unverified.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import dag_cbor
import pytest
import trio
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from learnae.gossip import connect, dial_line, open_host
from learnae.gossip.sync import BATCH, PROTOCOL, serve_sync, sync_with
from learnae.identity import Identity
from learnae.ledger import Ledger
from learnae.ledger.entry import sign_entry
from tests.ledger.chains import SWARM, ident, make_chain


async def _pair(stack: AsyncExitStack):
    server = await stack.enter_async_context(open_host(Identity.generate()))
    client = await stack.enter_async_context(open_host(Identity.generate()))
    await connect(client, dial_line(server))
    return server, client


async def test_a_late_peer_gets_every_authors_complete_chain_beyond_one_batch(tmp_path):
    authors = [ident(i) for i in range(3)]
    chains = {a.peer_id: make_chain(a, n) for a, n in zip(authors, (BATCH + 200, 40, 3))}
    with Ledger.open(tmp_path / "s", ident(10), swarm=SWARM) as theirs, \
            Ledger.open(tmp_path / "c", ident(11), swarm=SWARM) as ours:
        for chain in chains.values():
            for e in chain:
                assert theirs.receive(e).status.name == "ACCEPTED"
        for e in chains[authors[1].peer_id][:10]:  # the client heard the start of one chain
            ours.receive(e)
        async with AsyncExitStack() as stack:
            server, client = await _pair(stack)
            serve_sync(server, theirs, SWARM)
            stats = await sync_with(client, server.get_id(), ours, SWARM)
        assert stats.complete and stats.rounds >= 2  # more than one batch
        for author, chain in chains.items():
            assert [e.cid for e in ours.entries(author=author)] == [e.cid for e in chain], author


async def test_a_joining_peer_takes_back_its_own_lost_chain_alone_and_the_rest_after(tmp_path):
    """At join a peer asks for its own chain only (``only``): it comes whole, beyond one batch,
    and nobody else's history with it; a full sync afterwards brings the rest."""
    me, others = ident(11), [ident(i) for i in range(2)]
    mine = make_chain(me, BATCH + 50)  # what this peer signed before it lost its ledger
    chains = {a.peer_id: make_chain(a, 300) for a in others}
    with Ledger.open(tmp_path / "s", ident(10), swarm=SWARM) as theirs, \
            Ledger.open(tmp_path / "c", me, swarm=SWARM) as ours:
        for e in [*mine, *(e for chain in chains.values() for e in chain)]:
            assert theirs.receive(e).status.name == "ACCEPTED"
        async with AsyncExitStack() as stack:
            server, client = await _pair(stack)
            serve_sync(server, theirs, SWARM)
            ours.recovering = True
            own = await sync_with(client, server.get_id(), ours, SWARM, only=[me.peer_id])
            ours.recovering = False
            assert own.complete and own.stored == len(mine)
            assert ours.next_seq == len(mine)  # the next entry it signs follows its chain: no fork
            assert all(not ours.entries(author=a) for a in chains)
            rest = await sync_with(client, server.get_id(), ours, SWARM)
        assert rest.stored == 600
        for author, chain in chains.items():
            assert [e.cid for e in ours.entries(author=author)] == [e.cid for e in chain], author


async def test_a_peer_that_missed_an_equivocation_learns_of_it_from_a_peer_that_saw_it(tmp_path):
    liar = ident(3)
    chain = make_chain(liar, 8)
    twin = sign_entry(liar, swarm=SWARM, seq=4, prev=chain[3].cid, kind="leave", body={"reason": "the other story"})
    with Ledger.open(tmp_path / "s", ident(10), swarm=SWARM) as witness, \
            Ledger.open(tmp_path / "c", ident(11), swarm=SWARM) as ours:
        for e in chain:
            witness.receive(e)
            ours.receive(e)  # the client holds the whole honest-looking chain, past the forked seq
        assert witness.receive(twin).status.name == "FORK"
        assert not ours.fork_proofs()
        async with AsyncExitStack() as stack:
            server, client = await _pair(stack)
            serve_sync(server, witness, SWARM)
            stats = await sync_with(client, server.get_id(), ours, SWARM)
        assert stats.forks == 1
        [proof] = ours.fork_proofs()
        assert (proof.author, proof.seq) == (liar.peer_id, 4)


def _garbage_then_more() -> list[bytes]:
    forged = bytearray(sign_entry(ident(5), swarm=SWARM, seq=0, prev=None, kind="leave",
                                  body={"reason": "x"}).to_bytes())
    forged[-3] ^= 0xFF  # a broken signature
    return [bytes(forged), b"\x00garbage"] + [b"\x00" * 8] * (BATCH * 3)


def _old_news_forever(honest) -> list[bytes]:
    return [e.to_bytes() for e in honest] * BATCH  # valid, but held already: more than a batch of it


@pytest.mark.parametrize("frames", ["garbage", "old news"])
async def test_a_hostile_server_gets_nothing_stored_and_the_sync_ends(tmp_path, frames):
    honest = make_chain(ident(4), 3)
    sent = _garbage_then_more() if frames == "garbage" else _old_news_forever(honest)

    async def handler(stream):
        await read_varint_prefixed_bytes_limited(stream, 1 << 20)
        await stream.write(encode_varint_prefixed(dag_cbor.encode({"heads": {}})))
        for frame in sent:
            await stream.write(encode_varint_prefixed(frame))
        await stream.write(encode_varint_prefixed(b""))
        await stream.close()

    with Ledger.open(tmp_path / "c", ident(11), swarm=SWARM) as ours:
        for e in honest:
            ours.receive(e)
        before = {e.cid for e in ours.entries()}
        async with AsyncExitStack() as stack:
            server, client = await _pair(stack)
            server.set_stream_handler(PROTOCOL, handler)
            with trio.fail_after(60):
                stats = await sync_with(client, server.get_id(), ours, SWARM)
        assert stats.stored == 0 and stats.rounds == 1
        if frames == "garbage":
            assert not stats.complete and stats.rejected == 1  # the first invalid entry ends it
        assert {e.cid for e in ours.entries()} == before


async def test_a_fork_seen_before_the_chain_leading_to_it_does_not_hide_that_chain_from_sync(tmp_path):
    """Seen in a scenario: a peer holding an author's seq 0-3 received both entries of its fork at
    seq 10 (stored at once, as the proof) and reported seq 10 as its head, so no sync ever sent
    it 4-9; gap filling did not either (nothing was held)."""
    liar = ident(3)
    chain = make_chain(liar, 11)
    twin = sign_entry(liar, swarm=SWARM, seq=10, prev=chain[9].cid, kind="leave", body={"reason": "the other story"})
    with Ledger.open(tmp_path / "s", ident(10), swarm=SWARM) as witness, \
            Ledger.open(tmp_path / "c", ident(11), swarm=SWARM) as ours:
        for e in (*chain, twin):
            witness.receive(e)
        for e in chain[:4]:
            ours.receive(e)
        ours.receive(chain[10])
        assert ours.receive(twin).status.name == "FORK"  # before the chain leading to it
        async with AsyncExitStack() as stack:
            server, client = await _pair(stack)
            serve_sync(server, witness, SWARM)
            stats = await sync_with(client, server.get_id(), ours, SWARM)
        assert stats.complete
        assert sorted(e.seq for e in ours.entries(author=liar.peer_id)) == [*range(10), 10, 10]
