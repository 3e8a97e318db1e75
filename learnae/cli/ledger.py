"""`learnae ledger`: Read, verify and move the signed contribution ledger."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
from multiformats import CID

from learnae.cli.common import data_dir_option, emit_json, format_option, prepare_data_dir, resolve_data_dir
from learnae.errors import InvalidEntryError, UserError
from learnae.fsutil import prepare_output
from learnae.identity import KEY_FILE, Identity

__all__ = ["group"]


@click.group(name="ledger")
def group() -> None:
    """Read, verify and move the signed contribution ledger."""


def _ledger_dir(data_dir: Path) -> Path:
    from learnae.ledger.ledger import LEDGER_DIR

    return data_dir / LEDGER_DIR


def _open_readonly(data_dir: Path | None):
    from learnae.ledger import Ledger

    home = resolve_data_dir(data_dir)
    if not (_ledger_dir(home) / "own.log").exists() and not (_ledger_dir(home) / "received.log").exists():
        raise UserError(f"{home}: no ledger here; pass --data-dir of a peer, or import one with "
                        f"`learnae ledger import FILE.car`")
    return Ledger.open(home, readonly=True)


def _parse_cid(value: str, what: str) -> CID:
    try:
        return CID.decode(value)
    except Exception:
        raise UserError(f"{what} {value!r} is not a CID; pass one like bafkrei... as printed by "
                        f"`learnae ledger show`") from None


def _summary(e) -> str:
    b = e.body
    if e.kind == "snapshot":
        return f"model={b['model']} step={b['step']} samples={b['samples']} parents={len(b['parents'])}"
    if e.kind == "shard":
        return f"shard={b['shard']} samples={b['samples']}"
    if e.kind == "join":
        return f"fingerprint={b['fingerprint']} framework={b['framework']}"
    return f"reason={b['reason']!r}"


@group.command("show")
@data_dir_option
@click.option("--author", default=None, help="Only entries by this peer ID.")
@click.option("--kind", type=click.Choice(["join", "shard", "snapshot", "leave"]), default=None,
              help="Only entries of this kind.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many entries.")
@click.option("--latest", is_flag=True,
              help="Newest first (by time), so --limit N shows the N newest entries.")
@format_option
def show(data_dir: Path | None, author: str | None, kind: str | None, limit: int | None, latest: bool,
         fmt: str) -> None:
    """List ledger entries (by author, then seq; with --latest, newest first).

    A peer keeps only recent snapshots (its own two newest, the neighbours' it merged
    lately): the model CID of an old snapshot entry may be gone from every store.
    `learnae peer eval --latest self|any|PEER_ID` evaluates one that is kept.

    \b
    Example:
      learnae ledger show --kind snapshot --latest --limit 5   # the five newest snapshots
    """
    with _open_readonly(data_dir) as led:
        if latest:
            entries = sorted(led.entries(author=author, kind=kind), key=lambda e: (e.ts, e.author, e.seq),
                             reverse=True)[:limit]
        else:
            entries = led.entries(author=author, kind=kind, limit=limit)
        if fmt == "json":
            emit_json([e.to_json() for e in entries])
            return
        for e in entries:
            when = dt.datetime.fromtimestamp(e.ts / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            click.echo(f"{e.author}  {e.seq:>5}  {when}  {e.kind:<8}  {e.cid}  {_summary(e)}")
        forked = sorted({p.author for p in led.fork_proofs()})
        for a in forked:
            click.echo(f"warning: {a} is forked (signed two entries with one seq)", err=True)


def _verify_car(path: Path):
    from learnae.ledger.car import read_car
    from learnae.ledger.verify import Problem, VerifyReport, block_cid_ok, verify_blocks

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    roots, sections = read_car(data, name=str(path))
    blocks, bad = [], []
    for i, (cid, block) in enumerate(sections):
        if not block_cid_ok(cid, block):
            bad.append(Problem(i, str(cid), None, None, "cid-mismatch", "block bytes do not hash to their CID"))
        elif cid.codec.code == 0x71:
            blocks.append((cid, block))
    report = verify_blocks(blocks)
    if bad:
        report = VerifyReport(report.entries, report.authors, sorted(bad + report.problems, key=lambda p: p.index),
                              report.forks, report.notes, report.heads)
    return report


def _verify_dir(path: Path):
    from learnae.ledger.log import EntryLog
    from learnae.ledger.verify import Problem, VerifyReport, verify_blocks
    from learnae.ledger.entry import decode_entry

    ldir = path if (path / "own.log").exists() or (path / "received.log").exists() else _ledger_dir(path)
    if not (ldir / "own.log").exists() and not (ldir / "received.log").exists():
        raise UserError(f"{path}: no ledger here; pass a peer data dir, its ledger/ dir, or a .car file")
    own, recv = EntryLog(ldir / "own.log", readonly=True), EntryLog(ldir / "received.log", readonly=True)
    try:
        own_entries = []
        for _, data in own.records:
            try:
                own_entries.append(decode_entry(data, verify=False))
            except InvalidEntryError:
                break  # reported by verify_blocks below
        linear = {own_entries[0].author} if own_entries else set()
        # own.log must be one linear chain (checked below); a fork of our key that arrived from
        # the network sits in received.log as a proof and is reported, not failed
        report = verify_blocks([(None, d) for _, d in own.records + recv.records])
        problems, notes = list(report.problems), list(report.notes)
        for i, e in enumerate(own_entries):  # the own chain: record i holds seq i, one author
            if e.seq != i or e.author not in linear:
                problems.append(Problem(i, str(e.cid), e.author, e.seq, "own-chain-order",
                                        f"record {i} of own.log holds seq {e.seq} of {e.author}"))
                break
        for lg in (own, recv):
            if lg.damaged:
                problems.append(Problem(10**9, None, None, None, "damaged-log",
                                        f"{lg.path} is damaged at byte {lg.size}: {lg.torn_bytes} bytes "
                                        f"after it are unreadable"))
            elif lg.torn_bytes:
                notes.append(f"{lg.path.name}: {lg.torn_bytes} bytes of an interrupted append at the tail "
                             f"(not an entry; dropped when the peer next opens the ledger)")
        problems.sort(key=lambda p: p.index)
        return VerifyReport(report.entries, report.authors, problems, report.forks, notes, report.heads)
    finally:
        own.close()
        recv.close()


@group.command("verify")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@data_dir_option
@format_option
def verify(path: Path | None, data_dir: Path | None, fmt: str) -> None:
    """Verify every entry: signatures, schema, hash chains (PATH: data dir or .car file).

    Exit code 0 when valid; 1 with the first failing entry and why.
    """
    path = path or resolve_data_dir(data_dir)
    report = _verify_car(path) if path.is_file() else _verify_dir(path)
    if fmt == "json":
        emit_json(report.to_json())
    else:
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        for a, s, x, y in report.forks:
            click.echo(f"fork: {a} signed two entries at seq {s}: {x} {y}")
        if report.ok:
            click.echo(f"ok: {report.entries} entries from {report.authors} authors verified, "
                       f"{len(report.forks)} forks")
    if not report.ok:
        first = report.problems[0]
        raise InvalidEntryError(f"ledger {path} is invalid: {first} ({len(report.problems)} problems)",
                                reason=first.reason)


@group.command("credits")
@data_dir_option
@format_option
def credits(data_dir: Path | None, fmt: str) -> None:
    """Per-author contribution: samples, snapshots, merges by others, shards, forks, score."""
    with _open_readonly(data_dir) as led:
        rows = led.credits()
    if fmt == "json":
        emit_json([c.to_json() for c in rows])
        return
    click.echo(f"{'author':<52} {'score':>9} {'samples':>9} {'snaps':>6} {'merged':>6} {'weight':>7} "
               f"{'shards':>6} forked")
    for c in rows:
        click.echo(f"{c.author:<52} {c.score:>9.2f} {c.samples:>9} {c.snapshots:>6} {c.merged:>6} "
                   f"{c.merged_weight:>7.2f} {c.shards:>6} {'yes' if c.forked else 'no'}")


@group.command("trace")
@click.argument("model_cid")
@data_dir_option
@format_option
def trace(model_cid: str, data_dir: Path | None, fmt: str) -> None:
    """Trace a model CID back through merges to the authors and data shards behind it."""
    cid = _parse_cid(model_cid, "MODEL_CID")
    with _open_readonly(data_dir) as led:
        lin = led.trace(cid)
    if not lin.entries:
        raise UserError(f"MODEL_CID {model_cid}: no snapshot entry in this ledger announces it; "
                        f"list models with `learnae ledger show --kind snapshot`")
    if fmt == "json":
        emit_json(lin.to_json())
        return
    click.echo(f"model {lin.model}: {len(lin.authors)} authors, {len(lin.shards)} shards, {lin.merges} merges")
    for a in sorted(lin.authors.values(), key=lambda x: x.author):
        flag = "  FORKED" if a.forked else ""
        click.echo(f"  author {a.author} up to seq {a.horizon_seq}: {a.snapshots} snapshots, "
                   f"{a.samples} samples, merged with weight {a.merged_weight:.3f}{flag}")
    for s in lin.shards:
        click.echo(f"  shard {s.shard} ({s.samples} samples) from {s.author}")


@group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@data_dir_option
@click.option("--with-snapshots", is_flag=True,
              help="Also include the snapshot blocks found in the data dir's block store.")
def export(file: Path, data_dir: Path | None, with_snapshots: bool) -> None:
    """Write the ledger (and optionally snapshot blocks) to a CARv1 file."""
    extra = []
    with _open_readonly(data_dir) as led:
        file = prepare_output(file, what="FILE")
        if with_snapshots:
            extra = _snapshot_blocks(led, resolve_data_dir(data_dir))
        n = led.export_car(file, extra_blocks=extra)
    click.echo(f"wrote {file}: {n} blocks ({len(extra)} snapshot blocks)", err=True)


def _snapshot_blocks(led, home: Path) -> list:
    import trio

    from learnae.ledger.archive import collect_blocks

    try:
        from learnae.storage.blockstore import BlockStore
    except ImportError as exc:
        raise UserError(f"--with-snapshots needs the block store ({exc}); export without it") from None
    store = BlockStore(home / "blocks")
    models = {e.body["model"] for e in led.entries(kind="snapshot")}
    out, missing = [], 0
    for m in models:
        try:
            out.extend(trio.run(collect_blocks, [m], store.get_block))
        except Exception:  # not stored here (never fetched, or collected): leave it out
            missing += 1
    if missing:
        click.echo(f"note: {missing} of {len(models)} snapshots are not in {home / 'blocks'}; left out", err=True)
    return out


@group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_dir_option
@format_option
def import_(file: Path, data_dir: Path | None, fmt: str) -> None:
    """Verify and add every entry of a CARv1 file to this data dir's ledger."""
    from learnae.ledger import Ledger

    home = prepare_data_dir(data_dir)
    key = home / KEY_FILE
    identity = Identity.load(key) if key.exists() else None
    with Ledger.open(home, identity) as led:
        report = led.import_car(file)
    if fmt == "json":
        emit_json(report.to_json())
        return
    parts = ", ".join(f"{n} {s}" for s, n in sorted(report.statuses.items())) or "no entries"
    click.echo(f"imported {file}: {parts}")
    if report.rejected:
        click.echo("rejected: " + ", ".join(f"{n} {r}" for r, n in sorted(report.rejected.items())), err=True)
    if report.bad_blocks:
        click.echo(f"{report.bad_blocks} blocks did not match their CIDs and were dropped", err=True)
