"""Bulk framing (learnae.gossip.frames): the same frames as py-libp2p's, however the bytes arrive.

A scripted stream hands out the bytes in arbitrary pieces (a unit test: the ledger
sync tests run the framing over real hosts).
"""

from __future__ import annotations

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from learnae.gossip.frames import CHUNK, FrameError, FrameReader, FrameWriter


class Pieces:
    """A stream whose reads return the given pieces, one per read (never more than asked)."""

    def __init__(self, data: bytes, cuts: list[int]):
        self.pieces, at = [], 0
        for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
            if cut > at:
                self.pieces.append(data[at:cut])
                at = cut
        self.asked: list[int] = []
        self.written = bytearray()

    async def read(self, n: int) -> bytes:
        self.asked.append(n)
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        if len(piece) > n:
            piece, rest = piece[:n], piece[n:]
            self.pieces.insert(0, rest)
        return piece

    async def write(self, data: bytes) -> None:
        self.written += data


def read_all(reader: FrameReader, n: int, limit: int = 1 << 20) -> list[bytes]:
    async def go() -> list[bytes]:
        return [await reader.read(limit) for _ in range(n)]

    return trio.run(go)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.binary(max_size=300), max_size=20), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_frames_come_out_whole_however_the_bytes_are_cut(frames, cuts):
    wire = b"".join(encode_varint_prefixed(f) for f in frames)
    assert read_all(FrameReader(Pieces(wire, cuts)), len(frames)) == frames


@settings(max_examples=50, deadline=None)
@given(frames=st.lists(st.binary(max_size=5000), min_size=1, max_size=40))
def test_the_writer_sends_what_libp2ps_own_reader_reads_in_few_writes(frames):
    sink = Pieces(b"", [])
    writes = []

    async def write(data: bytes) -> None:
        writes.append(len(data))
        sink.written += data

    sink.write = write

    async def go() -> list[bytes]:
        out = FrameWriter(sink)
        for f in frames:
            await out.write(f)
        await out.flush()
        plain = Pieces(bytes(sink.written), [])
        return [await read_varint_prefixed_bytes_limited(plain, 1 << 20) for _ in frames]

    assert trio.run(go) == frames
    assert len(writes) <= sum(len(f) + 3 for f in frames) // CHUNK + 1  # batched, not one write per frame


def test_a_frame_over_the_limit_is_refused_from_its_prefix_alone():
    stream = Pieces(encode_varint_prefixed(b"x" * 10_000_000)[:12], [])
    with pytest.raises(FrameError, match="more than the 1024 allowed"):
        read_all(FrameReader(stream), 1, limit=1024)
    assert len(stream.asked) == 1  # its body was never asked for


@pytest.mark.parametrize("wire, message", [
    (b"\xff" * 12, "malformed"),  # a varint longer than any length
    (encode_varint_prefixed(b"abcdef")[:4], "ended inside a frame"),  # cut off in the body
    (b"\x80", "ended inside a frame"),  # cut off in the prefix
])
def test_a_broken_stream_is_a_frame_error(wire, message):
    with pytest.raises(FrameError, match=message):
        read_all(FrameReader(Pieces(wire, [])), 1)
