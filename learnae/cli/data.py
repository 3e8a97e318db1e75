"""`learnae data`: split a dataset into shards, publish them, inspect a manifest."""

from __future__ import annotations

from pathlib import Path

import click

from learnae.cli.common import data_dir_option, emit_json, format_option, resolve_data_dir

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
              help="Directory for shard-I-of-N.npz files.")
@format_option
def split(dataset: str, n_shards: int, partition: str, seed: int, out_dir: Path, fmt: str) -> None:
    """Partition DATASET (digits or an .npz file) into shard files a peer loads with --dataset.

    \b
    Example:
      learnae data split digits --shards 4 --partition classes:3 -o shards/
      learnae peer start --dataset shards/shard-0-of-4.npz
    """
    from learnae.data.datasets import load_dataset
    from learnae.data.shards import write_shard_files

    written = write_shard_files(load_dataset(dataset), n_shards, out_dir, partition=partition, seed=seed)
    rows = [{"path": str(path), **row} for (path, _), row in zip(written, _shard_rows(ds for _, ds in written))]
    if fmt == "json":
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['path']}  {r['samples']:>6} samples  classes {r['classes']}")


@group.command("publish")
@click.argument("dataset")
@click.option("--shards", "n_shards", type=click.IntRange(1, 4096), required=True, help="Number of shards.")
@click.option("--partition", default="iid", show_default=True, help=PARTITION_HELP)
@click.option("--seed", type=int, default=0, show_default=True, help="Partition seed.")
@data_dir_option
@format_option
def publish(dataset: str, n_shards: int, partition: str, seed: int, data_dir: Path | None, fmt: str) -> None:
    """Put DATASET's shards and a manifest in the data dir's store; print the manifest CID.

    Serve them with `learnae ipfs serve`; peers fetch their part over Bitswap.
    """
    import trio

    from learnae.data.datasets import load_dataset
    from learnae.data.manifest import manifest_summary, publish_shards
    from learnae.storage.store import EmbeddedStore

    ds = load_dataset(dataset)
    store = EmbeddedStore(resolve_data_dir(data_dir) / "blocks")
    cid, manifest = trio.run(lambda: publish_shards(store, ds, n_shards, partition=partition, seed=seed))
    summary = manifest_summary(manifest, cid)
    if fmt == "json":
        emit_json(summary)
        return
    click.echo(summary["manifest"])
    for s in summary["shards"]:
        click.echo(f"shard {s['index']}: {s['cid']}  {s['samples']} samples  classes {s['classes']}", err=True)


@group.command("inspect")
@click.argument("cid")
@data_dir_option
@format_option
def inspect(cid: str, data_dir: Path | None, fmt: str) -> None:
    """Show a shard manifest from the data dir's store: shard CIDs, sizes, class histograms."""
    import trio

    from learnae.data.manifest import fetch_manifest, manifest_summary
    from learnae.storage.cid import parse_cid
    from learnae.storage.store import EmbeddedStore

    store = EmbeddedStore(resolve_data_dir(data_dir) / "blocks")
    root = parse_cid(cid)
    summary = manifest_summary(trio.run(lambda: fetch_manifest(store, root)), root)
    if fmt == "json":
        emit_json(summary)
        return
    click.echo(f"manifest    {summary['manifest']}")
    click.echo(f"dataset     {summary['dataset']} ({summary['samples']} samples, {summary['num_classes']} classes)")
    click.echo(f"partition   {summary['partition']} (seed {summary['seed']})")
    for s in summary["shards"]:
        click.echo(f"shard {s['index']:<5} {s['cid']}  {s['samples']:>6} samples  classes {s['classes']}")
