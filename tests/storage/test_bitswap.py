"""Bitswap between real py-libp2p hosts on loopback."""

from __future__ import annotations

import pytest
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

from learnae.errors import FetchError
from learnae.storage.bitswap import PROTOCOLS, Bitswap
from learnae.storage.bitswap.engine import _Reader
from learnae.storage.bitswap.message import (
    DONT_HAVE, HAVE, WANT_BLOCK, WANT_HAVE, WantEntry, cid_prefix, decode_message, encode_message,
)
from learnae.storage.cid import cid_of
from learnae.storage.dagpb import _bytes_field, varint
from learnae.storage.store import EmbeddedStore
from learnae.storage.unixfs import CHUNK_BYTES, import_bytes, read_file
from tests.storage.conftest import content, full_addr, running_host

SIZE = 5 * CHUNK_BYTES + 123  # 6 leaves under one node


@pytest.fixture
def seeded(tmp_path):
    async def make(name: str, data: bytes | None = None) -> EmbeddedStore:
        store = EmbeddedStore(tmp_path / name)
        if data is not None:
            await store.put(data)
        return store
    return make


async def test_fetch_a_file_from_one_provider(seeded):
    data = content("one", SIZE)
    a, b = await seeded("a", data), await seeded("b")
    cid = (await a.pins())[0]
    async with running_host() as ha, running_host() as hb:
        async with Bitswap(ha, a.blocks).run(), Bitswap(hb, b.blocks).run() as bsb:
            stats = await bsb.fetch(cid, [full_addr(ha)], timeout_s=30)
            assert stats.blocks == 7 and stats.providers == (str(ha.get_id()),)
            b.fetcher = bsb.fetch
            assert await b.get(cid) == data


async def test_server_answers_wants_on_a_stream_it_opens(seeded):
    """What go-bitswap needs: HAVE/DONT_HAVE/blocks arrive on a new stream from the responder."""
    data = content("srv", 1000)
    a = await seeded("a", data)
    present, missing = cid_of(data), cid_of(b"missing")
    got: list = []
    arrived = trio.Event()

    async def on_stream(stream):
        msg = decode_message(await _Reader(stream).read_message(10))
        got.append(msg)
        arrived.set()

    async with running_host() as ha, running_host() as hc:
        for proto in PROTOCOLS:
            hc.set_stream_handler(proto, on_stream)
        async with Bitswap(ha, a.blocks).run():
            await hc.connect(info_from_p2p_addr(Multiaddr(full_addr(ha))))
            stream = await hc.new_stream(ha.get_id(), [PROTOCOLS[0]])
            wants = [WantEntry(present, WANT_HAVE, send_dont_have=True),
                     WantEntry(missing, WANT_HAVE, send_dont_have=True),
                     WantEntry(present, WANT_BLOCK)]
            body = encode_message(wants=wants)
            await stream.write(varint(len(body)) + body)
            with trio.fail_after(10):
                await arrived.wait()
                while sum(len(m.blocks) for m in got) < 1:
                    await trio.sleep(0.05)
            with trio.move_on_after(0.3):  # nothing comes back on the requester's own stream
                assert await stream.read(1) in (b"", None)
    presences = [p for m in got for p in m.presences]
    assert (present, HAVE) in presences and (missing, DONT_HAVE) in presences
    assert [blk for m in got for blk in m.blocks] == [(present, data)]


async def test_fetch_from_several_providers_and_skip_one_without_the_data(seeded):
    data = content("many", SIZE)
    p1, p2, empty, b = await seeded("p1", data), await seeded("p2", data), await seeded("e"), await seeded("b")
    cid = (await p1.pins())[0]
    async with running_host() as h1, running_host() as h2, running_host() as he, running_host() as hb:
        async with Bitswap(h1, p1.blocks).run(), Bitswap(h2, p2.blocks).run(), \
                Bitswap(he, empty.blocks).run(), Bitswap(hb, b.blocks, window_blocks=2).run() as bsb:
            # the empty peer is named first: its DONT_HAVE sends the want elsewhere
            stats = await bsb.fetch(cid, [full_addr(he), full_addr(h1), full_addr(h2)], timeout_s=30)
    assert set(stats.providers) == {str(h1.get_id()), str(h2.get_id())}
    assert b"".join(read_file(cid, b.blocks.get_block)) == data


async def test_a_lazy_fetch_asks_only_the_named_provider_and_falls_back_when_it_lacks_the_data(seeded):
    """A snapshot fetched from its author costs the other peers nothing (eager=False)."""
    data = content("lazy", 1000)
    author, other, empty, b = await seeded("au", data), await seeded("ot", data), await seeded("em"), await seeded("b")
    cid = (await author.pins())[0]
    async with running_host() as ha, running_host() as ho, running_host() as he, running_host() as hb:
        async with Bitswap(ha, author.blocks).run(), Bitswap(ho, other.blocks).run() as bso, \
                Bitswap(he, empty.blocks).run() as bse, Bitswap(hb, b.blocks).run() as bsb:
            for h in (ha, ho, he):
                await hb.connect(info_from_p2p_addr(Multiaddr(full_addr(h))))
            stats = await bsb.fetch(cid, [str(ha.get_id())], timeout_s=30, eager=False)
            assert stats.providers == (str(ha.get_id()),)
            assert bso.stats["wants_received"] == 0 and bse.stats["wants_received"] == 0
            # the named provider has nothing: the connected peers are asked next, and deliver
            b.blocks.gc()
            stats = await bsb.fetch(cid, [str(he.get_id())], timeout_s=30, eager=False)
            assert len(stats.providers) == 1 and stats.providers[0] in {str(ha.get_id()), str(ho.get_id())}
            # eager (the default) asks every connected peer for the root at once
            b.blocks.gc()
            before = bse.stats["wants_received"]
            await bsb.fetch(cid, [str(ho.get_id())], timeout_s=30)
            assert bse.stats["wants_received"] > before
    assert b"".join(read_file(cid, b.blocks.get_block)) == data

async def test_silent_and_lying_providers_time_out_and_the_want_moves_on(seeded):
    """One provider never answers, one answers with wrong bytes: both are skipped, nothing bad is stored."""
    data = content("lie", SIZE)
    good, b = await seeded("good", data), await seeded("b")
    cid = (await good.pins())[0]

    async def liar(stream):  # answers every want with garbage under the wanted CID's prefix
        peer = stream.muxed_conn.peer_id
        msg = decode_message(await _Reader(stream).read_message(10))
        out = await hl.new_stream(peer, [PROTOCOLS[0]])
        body = b"".join(_bytes_field(3, _bytes_field(1, cid_prefix(w.cid)) + _bytes_field(2, b"garbage"))
                        for w in msg.wants)
        await out.write(varint(len(body)) + body)

    async with running_host() as hs, running_host() as hl, running_host() as hg, running_host() as hb:
        for proto in PROTOCOLS:
            hl.set_stream_handler(proto, liar)
        # hs runs no Bitswap at all: wants to it go nowhere
        async with Bitswap(hg, good.blocks).run(), \
                Bitswap(hb, b.blocks, request_timeout_s=0.5).run() as bsb:
            stats = await bsb.fetch(cid, [full_addr(hs), full_addr(hl), full_addr(hg)], timeout_s=30)
            assert stats.providers == (str(hg.get_id()),)
            assert bsb.stats["unsolicited_blocks"] >= 1
            assert bsb.stats["want_timeouts"] >= 1
    assert b.blocks.corrupt_blocks == 0


async def test_corrupt_local_block_is_refetched(seeded):
    data = content("refetch", SIZE)
    a, b = await seeded("a", data), await seeded("b", data)
    cid = (await a.pins())[0]
    leaf = cid_of(data[CHUNK_BYTES:2 * CHUNK_BYTES])
    b.blocks._path(leaf).write_bytes(b"bit rot")
    async with running_host() as ha, running_host() as hb:
        async with Bitswap(ha, a.blocks).run(), Bitswap(hb, b.blocks).run() as bsb:
            await hb.connect(info_from_p2p_addr(Multiaddr(full_addr(ha))))
            b.fetcher = bsb.fetch  # connected peers are providers
            assert await b.get(cid) == data
    assert b.blocks.corrupt_blocks == 1
    assert b.blocks.get_block(leaf) == data[CHUNK_BYTES:2 * CHUNK_BYTES]


async def test_dht_hook_finds_a_provider_nobody_named(seeded):
    data = content("dht", 3000)
    a, b = await seeded("a", data), await seeded("b")
    cid = (await a.pins())[0]
    asked = []
    async with running_host() as ha, running_host() as hb:
        async def find_providers(c):
            asked.append(c)
            return [full_addr(ha)]
        async with Bitswap(ha, a.blocks).run(), Bitswap(hb, b.blocks, find_providers=find_providers).run() as bsb:
            stats = await bsb.fetch(cid, timeout_s=30)
    assert asked == [cid] and stats.blocks == 1


async def test_no_provider_is_a_fetch_error(seeded):
    b = await seeded("b")
    async with running_host() as hb:
        async with Bitswap(hb, b.blocks).run() as bsb:
            with pytest.raises(FetchError):
                await bsb.fetch(cid_of(b"nobody has this"), timeout_s=10)


async def test_store_get_fetches_from_the_author_it_is_told_about(seeded):
    data = content("author", SIZE)
    a, b = await seeded("a", data), await seeded("b")
    cid = (await a.pins())[0]
    async with running_host() as ha, running_host() as hb:
        async with Bitswap(ha, a.blocks).run(), Bitswap(hb, b.blocks).run() as bsb:
            b.fetcher = bsb.fetch
            assert hb.get_connected_peers() == []
            assert await b.get(cid, providers=[full_addr(ha)]) == data


async def test_embedded_nodes_exchange_snapshots(tmp_path):
    """Two peers as the runtime wires them: put on one, get by CID (author hint) on the other."""
    import numpy as np

    from learnae.storage import open_embedded_node
    from learnae.storage.snapshot import decode_snapshot, encode_snapshot

    weights = [np.linspace(-3, 3, 300_000, dtype=np.float32).reshape(600, 500), np.ones(7, np.float32)]
    async with running_host() as ha, running_host() as hb:
        async with open_embedded_node(ha, tmp_path / "a") as a, open_embedded_node(hb, tmp_path / "b") as b:
            cid = await a.put(encode_snapshot(weights, ["w", "b"], encoding="float16", step=3))
            snap = decode_snapshot(await b.get(cid, providers=[full_addr(ha)]))
            assert snap.step == 3 and np.allclose(snap.arrays[0], weights[0], rtol=2**-11, atol=2**-24)
            assert b.bitswap.stats["blocks_received"] == 4  # 3 leaves + root


async def test_an_interrupted_fetch_resumes_with_what_is_on_disk(seeded):
    """Blocks already stored (e.g. before a kill -9) are not fetched again."""
    data = content("resume", SIZE)
    a, b = await seeded("a", data), await seeded("b")
    cid = (await a.pins())[0]
    for i in range(3):  # the first three leaves made it to disk before the "crash"
        leaf = data[i * CHUNK_BYTES:(i + 1) * CHUNK_BYTES]
        b.blocks.put_block(cid_of(leaf), leaf)
    async with running_host() as ha, running_host() as hb:
        async with Bitswap(ha, a.blocks).run() as bsa, Bitswap(hb, b.blocks).run() as bsb:
            stats = await bsb.fetch(cid, [full_addr(ha)], timeout_s=30)
    assert (stats.local_blocks, stats.blocks) == (3, 4)  # root + 3 leaves over the network
    assert bsa.stats["blocks_sent"] == 4
    assert b"".join(read_file(cid, b.blocks.get_block)) == data


async def test_a_restarted_bitswap_on_a_live_connection_is_served_at_once(seeded, tmp_path):
    """The provider notices the old stream is gone and answers on a new one (no timeout)."""
    from learnae.storage.blockstore import BlockStore

    data = content("restart", SIZE)
    a = await seeded("a", data)
    cid = (await a.pins())[0]
    async with running_host() as ha, running_host() as hb:
        async with Bitswap(ha, a.blocks).run():
            for round_ in range(3):
                async with Bitswap(hb, BlockStore(tmp_path / f"b{round_}"), request_timeout_s=3).run() as bsb:
                    stats = await bsb.fetch(cid, [full_addr(ha)], timeout_s=30)
                    assert stats.blocks == 7 and bsb.stats["want_timeouts"] == 0


async def test_fetch_from_py_libp2p_shipped_bitswap(seeded):
    """py-libp2p's own Bitswap answers on the requester's stream; we read that too."""
    from libp2p.bitswap.client import BitswapClient

    data = content("pylibp2p", SIZE)
    blocks: dict = {}
    root = import_bytes(data, lambda c, d: blocks.setdefault(c, bytes(d)))
    b = await seeded("b")
    async with running_host() as ha, running_host() as hb:
        theirs = BitswapClient(ha)
        await theirs.start()
        try:
            for cid, block in blocks.items():
                await theirs.add_block(bytes(cid), block)
            async with Bitswap(hb, b.blocks).run() as bsb:
                stats = await bsb.fetch(root, [full_addr(ha)], timeout_s=30)
        finally:
            await theirs.stop()
    assert stats.blocks == len(blocks)
    assert b"".join(read_file(root, b.blocks.get_block)) == data


async def test_unreachable_peers_are_forgotten(seeded):
    """A peer that does not speak Bitswap leaves no send queue (or task) behind."""
    data = content("forget", 3000)
    a, b = await seeded("a", data), await seeded("b")
    cid = (await a.pins())[0]
    async with running_host() as ha, running_host() as hs, running_host() as hb:
        async with Bitswap(ha, a.blocks).run(), Bitswap(hb, b.blocks, request_timeout_s=0.5).run() as bsb:
            await bsb.fetch(cid, [full_addr(hs), full_addr(ha)], timeout_s=30)
            with trio.fail_after(10):
                while hs.get_id() in bsb._outboxes:
                    await trio.sleep(0.05)
            assert bsb.stats["send_failures"] >= 1
