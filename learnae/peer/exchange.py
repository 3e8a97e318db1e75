"""A short-lived host with Bitswap on a block store: ``ipfs get/serve --from`` and ``peer eval --from``.

A full peer (:mod:`learnae.peer.node`) gossips, keeps a ledger and trains; a
command that only moves blocks needs none of that, just a libp2p host speaking
Bitswap on the data dir's blocks. This is the one other place, besides
:func:`~learnae.peer.node.open_peer_node`, where a host is built.

Example:
    >>> async with open_block_exchange(store.blocks) as ex:          # doctest: +SKIP
    ...     stats = await ex.fetch(cid, ["/ip4/127.0.0.1/tcp/4011/p2p/12D3KooW..."], timeout_s=60)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from learnae.identity import Identity

__all__ = ["BlockExchange", "open_block_exchange", "check_peer_addrs"]

LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)


@dataclass(frozen=True, slots=True)
class BlockExchange:
    """A running host and its Bitswap.

    Attributes:
        addr: the full multiaddr other peers (or ``ipfs swarm connect``) dial.
        peer_id: the host's peer ID.
        bitswap: the running :class:`learnae.storage.bitswap.Bitswap`.
        other_addrs: on a wildcard listener, the addresses other machines dial
            (:func:`learnae.peer.reach.other_machine_addrs`); None otherwise.
    """

    addr: str
    peer_id: str
    bitswap: object
    other_addrs: list[str] | None = None

    async def fetch(self, cid, providers: Sequence[str], *, timeout_s: float):
        """Bring the DAG under ``cid`` into the block store from ``providers``; its FetchStats.

        Raises:
            FetchError: no provider delivered it within ``timeout_s``.
        """
        return await self.bitswap.fetch(cid, list(providers), timeout_s=timeout_s)


@asynccontextmanager
async def open_block_exchange(blocks, *, identity: Identity | None = None,
                              listen: Sequence[str] = LOOPBACK) -> AsyncIterator[BlockExchange]:
    """Serve and fetch ``blocks`` over Bitswap on a host of its own until the block exits.

    Args:
        blocks: a :class:`~learnae.storage.BlockStore` (``store.blocks``).
        identity: the host's key; a throwaway one by default (fetching only).
        listen: TCP multiaddrs to listen on (loopback, any free port, by default).

    Raises:
        ConfigError: a listen address is not a TCP multiaddr.
        ServiceError: it cannot be bound.
    """
    from learnae.gossip import dial_line, open_host
    from learnae.peer.reach import other_machine_addrs
    from learnae.storage.bitswap import Bitswap

    identity = identity or Identity.generate()
    async with open_host(identity, list(listen)) as host, Bitswap(host, blocks).run() as bitswap:
        yield BlockExchange(dial_line(host), identity.peer_id, bitswap, other_machine_addrs(host))


def check_peer_addrs(addrs: Sequence[str], *, flag: str = "--from") -> None:
    """Check that each of ``addrs`` is a full peer multiaddr.

    Raises:
        UserError: naming ``flag``, the bad value and the expected form.
    """
    from learnae.errors import ConfigError, UserError
    from learnae.gossip import parse_peer_addr

    for addr in addrs:
        try:
            parse_peer_addr(addr)
        except ConfigError:
            raise UserError(
                f"{flag} {addr!r} is not a full multiaddr; it must look like "
                "/ip4/127.0.0.1/tcp/4011/p2p/12D3KooW... (the first line of `learnae ipfs serve` "
                "or `learnae peer start`)"
            ) from None
