"""The UnixFS importer gives exactly the CIDs of `ipfs add` (vectors from real Kubo and the JS importer)."""

from __future__ import annotations

import hashlib

import pytest

from learnae.errors import InvalidBlockError
from learnae.storage.cid import cid_of
from learnae.storage.dagpb import DIRECTORY, decode_node, encode_node, encode_unixfs
from learnae.storage.unixfs import CHUNK_BYTES, Importer, import_bytes, read_file, unixfs_cid
from tests.storage.conftest import content, load_vectors

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
