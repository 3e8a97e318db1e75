"""The embedded block store: corruption is caught and never returned, writes survive kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dag_cbor
import pytest

from learnae.errors import FetchError, InvalidBlockError, StoreError
from learnae.storage.blockstore import BlockStore, CorruptBlockError
from learnae.storage.cid import cid_of
from learnae.storage.store import EmbeddedStore
from learnae.storage.unixfs import CHUNK_BYTES
from tests.storage.conftest import content


def _block_file(bs: BlockStore, cid) -> "os.PathLike":
    return bs._path(cid)


async def test_corrupt_block_on_disk_is_detected_quarantined_and_never_returned(tmp_path):
    store = EmbeddedStore(tmp_path / "blocks")
    data = content("rot", CHUNK_BYTES + 10)
    root = await store.put(data)
    leaf = cid_of(data[:CHUNK_BYTES])
    path = _block_file(store.blocks, leaf)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="corrupt"):
        await store.get(root)
    assert store.blocks.corrupt_blocks == 1
    assert not path.exists()
    assert list((tmp_path / "blocks" / "corrupt").iterdir())
    with pytest.raises(FetchError):  # gone now, and no network to refetch from
        await store.get(root)


def test_truncated_block_is_corrupt(tmp_path):
    bs = BlockStore(tmp_path)
    cid = cid_of(b"x" * 1000)
    bs.put_block(cid, b"x" * 1000)
    _block_file(bs, cid).write_bytes(b"x" * 10)
    with pytest.raises(CorruptBlockError):
        bs.get_block(cid)


def test_put_rejects_wrong_hash(tmp_path):
    bs = BlockStore(tmp_path)
    with pytest.raises(InvalidBlockError):
        bs.put_block(cid_of(b"a"), b"b")
    assert not list(bs.cids())


def test_gc_keeps_dag_cbor_chains_under_a_pin(tmp_path):
    bs = BlockStore(tmp_path)
    first = dag_cbor.encode({"seq": 0, "prev": None})
    first_cid = cid_of(first, "dag-cbor")
    second = dag_cbor.encode({"seq": 1, "prev": first_cid})
    second_cid = cid_of(second, "dag-cbor")
    stray = b"stray"
    for c, d in ((first_cid, first), (second_cid, second), (cid_of(stray), stray)):
        bs.put_block(c, d)
    bs.pin(second_cid)
    assert bs.gc() == 1
    assert bs.get_block(first_cid) == first



def test_gc_survives_a_pin_removed_while_it_lists_the_pins(tmp_path, monkeypatch):
    """A peer unpins its old snapshot (publishing) while a checkpoint collects garbage."""
    bs = BlockStore(tmp_path)
    kept, gone = b"kept", b"gone"
    for d in (kept, gone):
        bs.put_block(cid_of(d), d)
        bs.pin(cid_of(d))
    listing = sorted((tmp_path / "pins").iterdir())
    bs.unpin(cid_of(gone))  # after the listing: the gc sees a pin file that no longer exists
    monkeypatch.setattr(type(tmp_path), "iterdir", lambda self: iter(listing) if self.name == "pins" else iter(()))
    assert bs.pins() == [cid_of(kept)]


_WRITER = """
import sys, os
from learnae.storage.blockstore import BlockStore
from learnae.storage.cid import cid_of
bs = BlockStore(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    data = os.urandom(1024 * 1024)
    bs.put_block(cid_of(data), data)
    i += 1
"""


def test_kill_9_mid_write_leaves_no_half_block(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    bs = BlockStore(tmp_path)
    cids = list(bs.cids())
    assert cids, "the writer stored nothing before it was killed"
    for cid in cids:
        bs.get_block(cid)  # every block that is visible is whole
    assert bs.corrupt_blocks == 0


def _mode(path) -> int:
    import stat

    return stat.S_IMODE(path.stat().st_mode)


def test_everything_the_store_writes_is_private(tmp_path):
    """Blocks may hold a peer's training shard: directories 0700, files 0600, whatever the umask."""

    old = os.umask(0o022)  # the usual umask, under which files would be 0644
    try:
        bs = BlockStore(tmp_path / "blocks")
        cid = cid_of(b"private")
        bs.put_block(cid, b"private")
        with bs.writer() as sink:
            sink(cid_of(b"via writer"), b"via writer")
        bs.pin(cid)
        path = bs._path(cid)
        path.write_bytes(b"rot")  # quarantined on read: the corrupt/ directory is private too
        with pytest.raises(CorruptBlockError):
            bs.get_block(cid)
    finally:
        os.umask(old)
    root = tmp_path / "blocks"
    dirs = [root, *[p for p in root.rglob("*") if p.is_dir()]]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert {d.name for d in dirs} >= {"blocks", "pins", "corrupt"} and len(files) == 3
    assert {_mode(d) for d in dirs} == {0o700}
    assert {_mode(f) for f in files} == {0o600}


def test_an_open_blocks_directory_is_closed_when_opened(tmp_path):
    root = tmp_path / "blocks"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    BlockStore(root)
    assert _mode(root) == 0o700
