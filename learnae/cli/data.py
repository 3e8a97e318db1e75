"""`learnae data`: split a dataset into shards, publish them, inspect a manifest."""

from __future__ import annotations

from pathlib import Path

import click

from learnae.cli.common import (data_dir_option, emit_json, format_option, prepare_data_dir, reading_store,
                                resolve_data_dir)
from learnae.fsutil import prepare_dir

__all__ = ["group"]

PARTITION_HELP = "iid, dirichlet:ALPHA (e.g. dirichlet:0.5) or classes:K (e.g. classes:2)."


@click.group(name="data")
def group() -> None:
    """Split, publish and inspect dataset shards."""


def _shard_rows(shards) -> list[dict]:
    return [{"index": i, "samples": len(ds), "classes": ds.class_histogram()} for i, ds in enumerate(shards)]


@group.command("split")
@click.argument("dataset")
@click.option("--shards", "n_shards", type=click.IntRange(1, 4096), required=True, help="Number of shards.")
@click.option("--partition", default="iid", show_default=True, help=PARTITION_HELP)
@click.option("--seed", type=int, default=0, show_default=True, help="Partition seed.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the shard-I-of-N.npz files and test.npz.")
@format_option
def split(dataset: str, n_shards: int, partition: str, seed: int, out_dir: Path, fmt: str) -> None:
    """Partition DATASET (digits or an .npz file) into shard files a peer loads with --dataset.

    The test split (20 % of each class, chosen by --seed exactly as peers choose
    theirs) is held out of every shard and written as test.npz; a peer started on
    a shard file evaluates on it.

    \b
    Example:
      learnae data split digits --shards 4 --partition classes:3 -o shards/
      learnae peer start --dataset shards/shard-0-of-4.npz
    """
    from learnae.data.datasets import load_dataset
    from learnae.data.shards import write_shard_files

    ds = load_dataset(dataset)
    out_dir = prepare_dir(out_dir, what="-o")
    files = write_shard_files(ds, n_shards, out_dir, partition=partition, seed=seed)
    rows = [{"path": str(path), "role": "shard", **row}
            for (path, _), row in zip(files.shards, _shard_rows(part for _, part in files.shards))]
    test_path, test = files.test
    rows.append({"path": str(test_path), "role": "test", "index": None, "samples": len(test),
                 "classes": test.class_histogram()})
    if fmt == "json":
        emit_json(rows)
        return
    for r in rows:
        role = "  (held-out test split: no shard holds these samples)" if r["role"] == "test" else ""
        click.echo(f"{r['path']}  {r['samples']:>6} samples  classes {r['classes']}{role}")


@group.command("publish")
@click.argument("dataset")
@click.option("--shards", "n_shards", type=click.IntRange(1, 4096), required=True, help="Number of shards.")
@click.option("--partition", default="iid", show_default=True, help=PARTITION_HELP)
@click.option("--seed", type=int, default=0, show_default=True, help="Partition seed.")
@data_dir_option
@format_option
def publish(dataset: str, n_shards: int, partition: str, seed: int, data_dir: Path | None, fmt: str) -> None:
    """Put DATASET's shards, its test split and a manifest in the data dir's store; print the manifest CID.

    The test split is held out of every shard (as `data split` does) and listed in
    the manifest as `test`. Serve them with `learnae ipfs serve`; peers fetch their
    part over Bitswap.
    """
    import trio

    from learnae.data.datasets import load_dataset
    from learnae.data.manifest import manifest_summary, publish_shards
    from learnae.storage.store import EmbeddedStore

    ds = load_dataset(dataset)
    store = EmbeddedStore(prepare_data_dir(data_dir) / "blocks")
    cid, manifest = trio.run(lambda: publish_shards(store, ds, n_shards, partition=partition, seed=seed))
    summary = manifest_summary(manifest, cid)
    if fmt == "json":
        emit_json(summary)
        return
    click.echo(summary["manifest"])
    for s in summary["shards"]:
        click.echo(f"shard {s['index']}: {s['cid']}  {s['samples']} samples  classes {s['classes']}", err=True)
    if summary["test"]:
        t = summary["test"]
        click.echo(f"test:    {t['cid']}  {t['samples']} samples  classes {t['classes']} (held out)", err=True)


@group.command("inspect")
@click.argument("cid")
@data_dir_option
@format_option
def inspect(cid: str, data_dir: Path | None, fmt: str) -> None:
    """Show a shard manifest from the data dir's store: shard CIDs, sizes, class histograms."""
    import trio

    from learnae.data.manifest import fetch_manifest, manifest_summary
    from learnae.data.shards import InvalidShardError
    from learnae.errors import FetchError, UserError
    from learnae.storage.cid import parse_cid

    root = parse_cid(cid)
    home = resolve_data_dir(data_dir)
    with reading_store(data_dir) as store:
        try:
            manifest = trio.run(lambda: fetch_manifest(store, root))
        except InvalidShardError:
            raise UserError(f"{cid} is not a shard manifest; pass the manifest CID that `learnae data publish` "
                            "printed (its shards' CIDs are listed by `learnae data inspect MANIFEST`)") from None
        except FetchError:
            raise FetchError(f"{cid} is not in the store of {home}; pass the --data-dir where "
                             "`learnae data publish` put it") from None
    summary = manifest_summary(manifest, root)
    if fmt == "json":
        emit_json(summary)
        return
    click.echo(f"manifest    {summary['manifest']}")
    click.echo(f"dataset     {summary['dataset']} ({summary['samples']} samples, {summary['num_classes']} classes)")
    click.echo(f"partition   {summary['partition']} (seed {summary['seed']})")
    for s in summary["shards"]:
        click.echo(f"shard {s['index']:<5} {s['cid']}  {s['samples']:>6} samples  classes {s['classes']}")
    if summary["test"]:
        t = summary["test"]
        click.echo(f"test        {t['cid']}  {t['samples']:>6} samples  classes {t['classes']} (held out)")
