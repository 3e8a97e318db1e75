"""`learnae key`: the peer's Ed25519 identity (new, show, export, import)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from learnae.cli.common import data_dir_option, emit_json, format_option, prepare_data_dir, resolve_data_dir
from learnae.errors import KeyFileError, UserError
from learnae.fsutil import atomic_write, prepare_output
from learnae.identity import EXPORT_FORMATS, KEY_FILE, Identity

__all__ = ["group"]


@click.group(name="key")
def group() -> None:
    """Manage the peer's Ed25519 identity (its libp2p peer ID and ledger signing key)."""


@group.command("new")
@data_dir_option
@click.option("--force", is_flag=True, help="Replace an existing key (its peer ID is lost).")
def new(data_dir: Path | None, force: bool) -> None:
    """Create a new identity key in the data dir and print its peer ID."""
    path = prepare_data_dir(data_dir) / KEY_FILE
    ident = Identity.generate()
    ident.save(path, overwrite=force)
    click.echo(ident.peer_id)
    click.echo(f"wrote {path} (mode 0600)", err=True)


@group.command("show")
@data_dir_option
@format_option
def show(data_dir: Path | None, fmt: str) -> None:
    """Print the peer ID and public key of the data dir's identity."""
    path = resolve_data_dir(data_dir) / KEY_FILE
    ident = Identity.load(path)
    info = {"peer_id": ident.peer_id, "public_key": ident.public_key.hex(), "key_type": "ed25519", "path": str(path)}
    if fmt == "json":
        emit_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k:<11} {v}")


@group.command("export")
@data_dir_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (mode 0600); '-' for stdout.")
@click.option("--key-format", type=click.Choice(EXPORT_FORMATS), default="libp2p-protobuf", show_default=True,
              help="libp2p-protobuf is what `ipfs key import` reads by default (64-byte seed+public key).")
def export(data_dir: Path | None, output: Path | None, key_format: str) -> None:
    """Export the private key in a form Kubo and other libp2p tools accept.

    \b
    Example:
      learnae key export -o peer.key
      ipfs key import learnae-peer peer.key
    """
    ident = Identity.load(resolve_data_dir(data_dir) / KEY_FILE)
    data = ident.to_bytes(key_format)
    if output is None or str(output) == "-":
        if key_format == "libp2p-protobuf" and sys.stdout.isatty():
            raise UserError("refusing to write a binary key to a terminal; pass -o FILE")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    if output.exists():
        raise UserError(f"{output} already exists; choose another -o path or remove it")
    output = prepare_output(output, what="-o")
    atomic_write(output, data, mode=0o600)
    click.echo(f"wrote {output} ({key_format}, peer {ident.peer_id})", err=True)


@group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@data_dir_option
@click.option("--force", is_flag=True, help="Replace an existing key (its peer ID is lost).")
def import_(file: Path, data_dir: Path | None, force: bool) -> None:
    """Import a private key (PEM PKCS#8, or libp2p protobuf as Kubo exports it)."""
    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise UserError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        ident = Identity.from_bytes(raw)
    except ValueError as exc:
        raise KeyFileError(f"{file}: {exc}") from None
    path = prepare_data_dir(data_dir) / KEY_FILE
    ident.save(path, overwrite=force)
    click.echo(ident.peer_id)
