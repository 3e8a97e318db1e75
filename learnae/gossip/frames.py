"""Varint-length-prefixed frames on a libp2p stream, read and written in bulk.

py-libp2p's ``read_varint_prefixed_bytes_limited`` reads a length prefix one byte
at a time and each call is a trip through yamux and the secure channel; written
one frame at a time, a stream of a thousand small frames (ledger entries, a few
hundred bytes each) costs ~20 stream reads and a window update per frame. Here
the writer batches frames into writes of ~64 KiB and the reader takes the stream
in chunks and cuts frames out of its buffer. The bytes on the wire are the same
frames, so either side may be the plain one.

Example:
    >>> out = FrameWriter(stream)                                # doctest: +SKIP
    >>> await out.write(b"one"); await out.write(b""); await out.flush()
    >>> frames = FrameReader(stream)                             # doctest: +SKIP
    >>> await frames.read(limit=1024)
    b'one'
"""

from __future__ import annotations

from libp2p.utils.varint import encode_varint_prefixed
from multiformats import varint

__all__ = ["FrameReader", "FrameWriter", "FrameError"]

CHUNK = 64 * 1024  # bytes per stream read, and per write


class FrameError(ValueError):
    """The stream ended inside a frame, or a frame is malformed or larger than allowed."""


class FrameReader:
    """Frames from ``stream``, each checked against a size limit before it is buffered."""

    def __init__(self, stream):
        self._stream = stream
        self._buf = bytearray()

    async def read(self, limit: int) -> bytes:
        """The next frame's payload (``b""`` for an empty frame).

        Raises:
            FrameError: the stream ended first, the prefix is not a varint, or the
                frame is longer than ``limit`` bytes (nothing of it is buffered).
        """
        while (header := self._header()) is None:
            await self._fill()
        length, size = header
        if length > limit:
            raise FrameError(f"a frame of {length} bytes, more than the {limit} allowed")
        while len(self._buf) < size + length:
            await self._fill(size + length - len(self._buf))
        payload = bytes(self._buf[size:size + length])
        del self._buf[:size + length]
        return payload

    def _header(self) -> tuple[int, int] | None:
        """(payload length, prefix size) of the frame at the buffer's start; None: need more bytes."""
        head = bytes(self._buf[:9])  # multiformats' varints are at most 9 bytes
        if len(head) < 9 and all(b & 0x80 for b in head):
            return None
        try:
            length, size, _ = varint.decode_raw(head)
        except ValueError as exc:
            raise FrameError(f"a malformed frame length: {exc}") from None
        return length, size

    async def _fill(self, want: int = 1) -> None:
        data = await self._stream.read(min(max(want, CHUNK), 4 * CHUNK))
        if not data:
            raise FrameError("the stream ended inside a frame")
        self._buf += data


class FrameWriter:
    """Frames to ``stream``, sent in writes of about :data:`CHUNK` bytes; :meth:`flush` sends the rest."""

    def __init__(self, stream):
        self._stream = stream
        self._buf = bytearray()

    async def write(self, payload: bytes) -> None:
        self._buf += encode_varint_prefixed(payload)
        if len(self._buf) >= CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            await self._stream.write(data)
