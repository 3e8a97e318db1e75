"""`learnae ipfs`: Content-addressed storage: add, get, pin and serve blocks.

Works on the data dir's store (``<data-dir>/blocks``, or the Kubo daemon when
``storage = "kubo"``). CIDs are the ones ``ipfs add --cid-version=1`` prints.

\b
Examples:
    learnae ipfs add weights.safetensors          # prints the CID alone
    learnae ipfs serve                             # first line: /ip4/.../p2p/12D3KooW...
    learnae ipfs get bafy... -o w.bin --from /ip4/127.0.0.1/tcp/4011/p2p/12D3KooW...
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import trio

from learnae.cli.common import (data_dir_option, emit_json, format_option, prepare_data_dir, reading_store,
                                resolve_data_dir)
from learnae.errors import FetchError, UserError, only_exception
from learnae.fsutil import prepare_output
from learnae.peer.config import load_config
from learnae.peer.exchange import check_peer_addrs, open_block_exchange
from learnae.storage.cid import parse_cid
from learnae.storage.store import EmbeddedStore, Store, open_store
from learnae.storage.unixfs import import_file

__all__ = ["group"]


def _store(data_dir: Path | None) -> Store:
    """The store of a command that writes to it: the data dir is created (and checked) first."""
    cfg, _ = load_config(cli={"data_dir": prepare_data_dir(data_dir)})
    return open_store(cfg)


def _cid(value: str):
    return parse_cid(value.strip())


@click.group(name="ipfs")
def group() -> None:
    """Content-addressed storage: add, get, pin and serve blocks."""


@group.command("add")
@data_dir_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pin/--no-pin", default=True, show_default=True, help="Pin the file (keep it through gc).")
@click.option("--only-hash", is_flag=True, help="Print the CID without storing anything.")
def add(data_dir: Path | None, file: Path, pin: bool, only_hash: bool) -> None:
    """Add FILE as a UnixFS file and print its CID (as `ipfs add --cid-version=1`)."""
    if only_hash:
        click.echo(str(import_file(file)))
        return
    store = _store(data_dir)

    async def run():
        if isinstance(store, EmbeddedStore):
            return await store.put_file(file, pin=pin)
        return await store.put(file.read_bytes(), pin=pin)

    click.echo(str(trio.run(run)))


async def _fetch_with_bitswap(store: EmbeddedStore, cid, peers: tuple[str, ...], timeout_s: float) -> None:
    async with open_block_exchange(store.blocks) as exchange:
        stats = await exchange.fetch(cid, peers, timeout_s=timeout_s)
    click.echo(f"fetched {stats.blocks} blocks ({stats.bytes} bytes) from "
               f"{', '.join(stats.providers) or 'nobody (all local)'} in {stats.elapsed_s:.2f} s", err=True)


def _with_peers(store: Store, peers: tuple[str, ...], timeout_s: float) -> Store:
    """``store``, fetching missing blocks from ``peers`` over Bitswap (embedded stores only)."""
    if peers:
        if not isinstance(store, EmbeddedStore):
            raise UserError("--from works with the embedded store only; with storage = kubo the daemon fetches")
        store.fetcher = lambda cid, providers=(), recursive=True: _fetch_with_bitswap(store, cid, peers, timeout_s)
    return store


_from_option = click.option(
    "--from", "peers", multiple=True, metavar="MULTIADDR",
    help="Fetch missing blocks over Bitswap from this peer (/ip4/H/tcp/P/p2p/ID); repeatable.")
_timeout_option = click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True,
                               help="Deadline for fetching from the network, in seconds.")


@group.command("get")
@data_dir_option
@click.argument("cid")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write (written atomically).")
@_from_option
@_timeout_option
def get(data_dir: Path | None, cid: str, output: Path, peers: tuple[str, ...], timeout_s: float) -> None:
    """Write the file CID to OUTPUT, fetching missing blocks from --from peers.

    Fetched blocks stay in the data dir's store. Without --data-dir, and no
    $LEARNAE_HOME or ~/.learnae yet, none is created: they go to a temporary
    store and only OUTPUT is written.
    """
    root = _cid(cid)
    check_peer_addrs(peers)
    output = prepare_output(output, what="-o")
    with reading_store(data_dir) as store:
        store = _with_peers(store, peers, timeout_s)

        async def run():
            try:
                if isinstance(store, EmbeddedStore):
                    return await store.get_to_file(root, output)
                data = await store.get(root)
                output.write_bytes(data)
                return len(data)
            except FetchError as exc:
                if not peers and isinstance(store, EmbeddedStore):
                    raise _not_here(root, data_dir) from exc
                raise

        size = trio.run(run)
    click.echo(f"wrote {size} bytes to {output}", err=True)


def _not_here(root, data_dir: Path | None) -> FetchError:
    return FetchError(f"{root} is not in the store of {resolve_data_dir(data_dir)}; "
                      "pass --from MULTIADDR to fetch it from a peer")


@group.command("cat")
@data_dir_option
@click.argument("cid")
@_from_option
@_timeout_option
def cat(data_dir: Path | None, cid: str, peers: tuple[str, ...], timeout_s: float) -> None:
    """Write the file CID to stdout."""
    root = _cid(cid)
    check_peer_addrs(peers)
    with reading_store(data_dir) as store:
        store = _with_peers(store, peers, timeout_s)
        try:
            data = trio.run(store.get, root)
        except FetchError as exc:
            if not peers and isinstance(store, EmbeddedStore):
                raise _not_here(root, data_dir) from exc
            raise
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@group.command("pin")
@data_dir_option
@click.argument("cids", nargs=-1, required=True)
@_from_option
@_timeout_option
def pin(data_dir: Path | None, cids: tuple[str, ...], peers: tuple[str, ...], timeout_s: float) -> None:
    """Pin CIDs (and everything below them) so gc keeps them."""
    roots = [_cid(c) for c in cids]
    check_peer_addrs(peers)
    store = _with_peers(_store(data_dir), peers, timeout_s)

    async def run():
        for root in roots:
            await store.pin(root)
            click.echo(f"pinned {root}")

    trio.run(run)


@group.command("unpin")
@data_dir_option
@click.argument("cids", nargs=-1, required=True)
def unpin(data_dir: Path | None, cids: tuple[str, ...]) -> None:
    """Unpin CIDs (gc may then remove their blocks)."""
    roots = [_cid(c) for c in cids]

    async def run(store):
        for root in roots:
            await store.unpin(root)
            click.echo(f"unpinned {root}")

    with reading_store(data_dir) as store:
        trio.run(run, store)


@group.command("ls")
@data_dir_option
@format_option
def ls(data_dir: Path | None, fmt: str) -> None:
    """List the pinned CIDs."""
    with reading_store(data_dir) as store:
        rows = [{"cid": str(c), "local": has} for c, has in trio.run(_pins_with_presence, store)]
    if fmt == "json":
        emit_json(rows)
    else:
        for r in rows:
            click.echo(r["cid"] + ("" if r["local"] else "  (root block missing)"))


async def _pins_with_presence(store: Store):
    return [(c, await store.has(c)) for c in await store.pins()]


@group.command("gc")
@data_dir_option
def gc(data_dir: Path | None) -> None:
    """Remove every block that no pin reaches."""
    with reading_store(data_dir) as store:
        removed = trio.run(store.gc)
    click.echo(f"removed {removed} blocks")


@group.command("serve")
@data_dir_option
@click.option("--listen", default="/ip4/127.0.0.1/tcp/0", show_default=True,
              help="Multiaddr to listen on (e.g. /ip4/0.0.0.0/tcp/4011 to serve other machines).")
def serve(data_dir: Path | None, listen: str) -> None:
    """Serve the data dir's blocks over Bitswap until stopped (Ctrl-C).

    The first line printed is the full multiaddr to pass to `get --from`
    (or to `ipfs swarm connect`): /ip4/.../tcp/.../p2p/<peer-id>.
    """
    from learnae.identity import Identity
    from learnae.peer.reach import other_machine_lines

    store = _store(data_dir)
    home = resolve_data_dir(data_dir)
    if not isinstance(store, EmbeddedStore):
        raise UserError("`learnae ipfs serve` needs storage = embedded; the Kubo daemon serves its own blocks")
    ident = Identity.load_or_create(home)

    async def run():
        async with open_block_exchange(store.blocks, identity=ident, listen=[listen]) as exchange:
            try:  # from the first line on, a Ctrl-C at any moment ends with the summary
                print(exchange.addr, flush=True)
                for line in other_machine_lines(exchange.other_addrs):
                    click.echo(line, err=True)
                click.echo(f"serving {store.blocks.root} as {ident.peer_id}; Ctrl-C to stop", err=True)
                await trio.sleep_forever()
            finally:
                click.echo(f"served {exchange.bitswap.stats['blocks_sent']} blocks", err=True)

    try:
        trio.run(run)
    except BaseException as exc:  # Ctrl-C is how it stops (trio may hand it over inside a group)
        if not isinstance(only_exception(exc), KeyboardInterrupt):
            raise
