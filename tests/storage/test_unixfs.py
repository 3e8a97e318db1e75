"""The UnixFS importer gives exactly the CIDs of `ipfs add` (vectors from real Kubo and the JS importer)."""

from __future__ import annotations

import hashlib

import pytest

from learnae.errors import InvalidBlockError
from learnae.storage.cid import cid_of
from learnae.storage.dagpb import DIRECTORY, decode_node, encode_node, encode_unixfs
from learnae.storage.unixfs import CHUNK_BYTES, FileSizeGuard, Importer, import_bytes, read_file, unixfs_cid
from tests.storage.conftest import content, load_vectors, repeated_leaf_dag

VECTORS = load_vectors()


def test_content_function_matches_readme():
    assert content("learnae", 1) == b"\x69"


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["label"])
def test_cids_match_ipfs_add(v, big_content):
    data = memoryview(big_content)[: v["size"]]
    assert hashlib.sha256(data).hexdigest() == v["content_sha256"]
    assert str(unixfs_cid(data)) == v["cidv1_raw_leaves"]
    assert str(unixfs_cid(data, cid_version=0)) == v["cidv0"]


def test_streaming_writes_in_odd_pieces_give_the_same_cid(big_content):
    data = big_content[: 3 * CHUNK_BYTES + 77]
    imp = Importer(None)
    for start in range(0, len(data), 100_003):
        imp.write(data[start:start + 100_003])
    assert imp.finish() == unixfs_cid(data)


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES, CHUNK_BYTES + 1, 175 * CHUNK_BYTES + 1])
@pytest.mark.parametrize("version", [0, 1])
def test_read_back_what_was_imported(size, version, big_content):
    data = big_content[:size]
    blocks: dict = {}
    root = import_bytes(data, lambda c, b: blocks.setdefault(c, bytes(b)), cid_version=version)
    assert all(len(b) <= 2 * 1024 * 1024 for b in blocks.values())
    assert b"".join(read_file(root, blocks.__getitem__)) == data


def test_reader_refuses_a_directory():
    node = encode_node([], encode_unixfs(DIRECTORY))
    cid = cid_of(node, "dag-pb")
    with pytest.raises(InvalidBlockError):
        list(read_file(cid, {cid: node}.__getitem__))


@pytest.mark.parametrize("garbage", [b"\xff", b"\x12\x05ab", b"\x0a\x80", b"\x12\x02\x0a\x00"])
def test_malformed_dag_pb_is_an_invalid_block(garbage):
    with pytest.raises(InvalidBlockError):
        decode_node(garbage)


# -- size claims: the reader and the fetch guard believe nothing they have not checked ----------


def counting(blocks: dict):
    calls = []

    def get(cid):
        calls.append(cid)
        return blocks[cid]
    return get, calls


def test_a_dag_bomb_is_refused_at_its_root_before_any_leaf_is_read():
    root, blocks = repeated_leaf_dag(content("bomb", CHUNK_BYTES), 174 * 174)  # 280 KB claiming 7.9 GB
    assert sum(map(len, blocks.values())) < 300_000
    get, calls = counting(blocks)
    with pytest.raises(InvalidBlockError) as exc:
        b"".join(read_file(root, get, max_bytes=10 << 20))
    assert exc.value.reason == "too-large" and calls == [root]
    guard = FileSizeGuard(root, 10 << 20)
    with pytest.raises(InvalidBlockError) as exc:
        guard.visit(root, len(blocks[root]), blocks[root])
    assert exc.value.reason == "too-large"


def test_a_file_of_repeated_blocks_within_the_bound_is_read_and_fetched_once():
    leaf = content("rep", 1000)
    root, blocks = repeated_leaf_dag(leaf, 400)  # a valid 400 kB file of 3 blocks (two levels)
    assert b"".join(read_file(root, blocks.__getitem__, max_bytes=400_000)) == leaf * 400
    with pytest.raises(InvalidBlockError):
        b"".join(read_file(root, blocks.__getitem__, max_bytes=399_999))
    guard, todo, visits = FileSizeGuard(root, 400_000), [root], 0
    while todo:
        cid = todo.pop()
        visits += 1
        todo += guard.visit(cid, len(blocks[cid]), blocks[cid])
    assert visits == len(blocks) == 4 and guard.file_bytes == len(leaf)  # each distinct block once


@pytest.mark.parametrize("claimed", [1000, 10**12])
def test_a_root_whose_filesize_is_not_its_blocksizes_sum_is_refused(claimed):
    root, blocks = repeated_leaf_dag(content("lie", 5000), 3, lie={"filesize": claimed})
    with pytest.raises(InvalidBlockError) as exc:
        b"".join(read_file(root, blocks.__getitem__))
    assert exc.value.reason == "bad-unixfs"
    with pytest.raises(InvalidBlockError) as exc:
        FileSizeGuard(root, None).visit(root, len(blocks[root]), blocks[root])
    assert exc.value.reason == "bad-unixfs"


def test_a_child_larger_than_its_parent_declares_is_refused():
    from learnae.storage.dagpb import FILE, Link, encode_unixfs

    leaf = content("big", 200_000)
    node = encode_node([Link(cid_of(leaf), 10)], encode_unixfs(FILE, filesize=10, blocksizes=[10]))
    root = cid_of(node, "dag-pb")
    blocks = {root: node, cid_of(leaf): leaf}
    with pytest.raises(InvalidBlockError) as exc:
        b"".join(read_file(root, blocks.__getitem__, max_bytes=100))
    assert exc.value.reason == "bad-unixfs"
    guard = FileSizeGuard(root, 100)
    (child,) = guard.visit(root, len(node), node)
    with pytest.raises(InvalidBlockError) as exc:
        guard.visit(child, len(leaf))
    assert exc.value.reason == "bad-unixfs"


def test_one_block_declared_with_two_sizes_is_refused_by_the_guard():
    from learnae.storage.dagpb import FILE, Link, encode_unixfs

    leaf = b"x" * 10
    node = encode_node([Link(cid_of(leaf), 10), Link(cid_of(leaf), 5)], encode_unixfs(FILE, filesize=15,
                                                                                    blocksizes=[10, 5]))
    with pytest.raises(InvalidBlockError) as exc:
        FileSizeGuard(cid_of(node, "dag-pb"), None).visit(cid_of(node, "dag-pb"), len(node), node)
    assert exc.value.reason == "bad-unixfs"


def test_links_to_nothing_cannot_keep_the_reader_busy():
    """Empty blocks linked 174 times per level, 12 levels deep: 174**12 visits, 0 bytes of file."""
    from learnae.storage.dagpb import FILE, Link, encode_unixfs

    blocks = {cid_of(b""): b""}
    cid = cid_of(b"")
    for _ in range(12):
        node = encode_node([Link(cid, 0)] * 174, encode_unixfs(FILE, filesize=0, blocksizes=[0] * 174))
        cid = cid_of(node, "dag-pb")
        blocks[cid] = node
    get, calls = counting(blocks)
    with pytest.raises(InvalidBlockError) as exc:
        b"".join(read_file(cid, get))
    assert exc.value.reason == "too-large" and len(calls) < 1000


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES + 1, 175 * CHUNK_BYTES + 1])
@pytest.mark.parametrize("version", [0, 1])
def test_imported_files_pass_every_size_check_at_their_exact_size(size, version, big_content):
    data = big_content[:size]
    blocks: dict = {}
    root = import_bytes(data, lambda c, b: blocks.setdefault(c, bytes(b)), cid_version=version)
    assert b"".join(read_file(root, blocks.__getitem__, max_bytes=size)) == data
    if size:
        with pytest.raises(InvalidBlockError):
            b"".join(read_file(root, blocks.__getitem__, max_bytes=size - 1))
    guard, todo = FileSizeGuard(root, size), [root]
    while todo:
        cid = todo.pop()
        todo += guard.visit(cid, len(blocks[cid]), blocks[cid])
    assert guard.file_bytes <= size
