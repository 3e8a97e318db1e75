"""``learnae peer eval``: fetch any snapshot by CID and measure it on a dataset.

The snapshot carries tensors, not an architecture, so the caller names the
model spec (the swarm's ``--model``); the snapshot's fingerprint must match it.
Blocks come from the local store, or over Bitswap from ``--from`` peers through
a short-lived host with a throwaway identity (:mod:`learnae.peer.exchange`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trio

from learnae.errors import FetchError, UserError

__all__ = ["EvalResult", "evaluate_snapshot", "kept_snapshot"]

FETCH_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class EvalResult:
    model: str
    step: int
    accuracy: float
    loss: float
    samples: int
    split: str


async def _fetch(store, cid, providers: tuple[str, ...]) -> bytes:
    if await store.has(cid) or not providers:
        return await store.get(cid)
    from learnae.peer.exchange import open_block_exchange

    async with open_block_exchange(store.blocks) as exchange:
        with trio.fail_after(FETCH_TIMEOUT_S):
            await exchange.fetch(cid, providers, timeout_s=FETCH_TIMEOUT_S)
    return await store.get(cid)


def evaluate_snapshot(data_dir, model_cid: str, *, model: str, dataset: str, split: str = "test",
                      seed: int = 0, providers: tuple[str, ...] = ()) -> EvalResult:
    """Fetch ``model_cid`` and evaluate it (blocking; loads TensorFlow).

    Raises:
        UserError: a bad CID, model spec, dataset or a snapshot of another model.
        FetchError: the snapshot is neither local nor delivered by ``providers``.
    """
    from learnae.data.datasets import load_dataset, split_dataset
    from learnae.data.shards import held_out_test
    from learnae.storage.cid import parse_cid
    from learnae.storage.snapshot import decode_snapshot, fingerprint
    from learnae.storage.store import EmbeddedStore
    from learnae.training.models import check_model_spec, load_model
    from learnae.training.evaluation import evaluate_model
    from learnae.training.weights import tensor_specs, write_weights

    cid = parse_cid(model_cid)
    check_model_spec(model)
    ds = load_dataset(dataset)
    held_out = held_out_test(dataset, like=ds) if split == "test" else None  # a shard file's test.npz
    if held_out is not None and len(held_out):
        part = held_out
    else:
        part = ds if split == "all" else getattr(split_dataset(ds, seed=seed), split)
    store = EmbeddedStore(data_dir / "blocks")
    try:
        data = trio.run(_fetch, store, cid, tuple(providers))
    except trio.TooSlowError:
        raise FetchError(f"snapshot {model_cid} not delivered within {FETCH_TIMEOUT_S:.0f} s by {', '.join(providers)}") from None
    except (KeyError, FetchError):
        raise FetchError(
            f"snapshot {model_cid} is not in {data_dir}: a peer keeps its own two newest snapshots and the "
            "neighbours' it merged lately, not every snapshot it ever saw; evaluate one that is kept with "
            "--latest self|any|PEER_ID, or pass --from PEER_MULTIADDR of a peer that has it") from None
    net = load_model(model, seed=seed)
    if not net.built:
        net.build((None, *part.x.shape[1:]))
    specs = tensor_specs(net)
    fp = fingerprint([s[0] for s in specs], [s[1] for s in specs], [s[2] for s in specs])
    snap = decode_snapshot(data, fingerprint=None)
    if snap.fingerprint != fp:
        raise UserError(f"snapshot {model_cid} is not a {model} model (fingerprint {snap.fingerprint[:12]}... "
                        f"vs {fp[:12]}...); pass the swarm's --model")
    write_weights(net, snap.arrays)
    loss, acc = evaluate_model(net, part.x, part.y)
    return EvalResult(str(cid), snap.step, acc, loss, len(part), split)


def kept_snapshot(data_dir, who: str) -> str:
    """The model CID ``--latest`` names: the newest snapshot of ``who`` whose blocks this data dir keeps.

    Args:
        who: ``self`` (this data dir's peer), ``any`` (any author), or a peer ID.

    Raises:
        UserError: there is no such snapshot here.
    """
    from learnae.identity import KEY_FILE, Identity
    from learnae.ledger import Ledger
    from learnae.storage.blockstore import BlockStore

    data_dir = Path(data_dir)
    if not (data_dir / "ledger").is_dir():
        raise UserError(f"--latest {who}: {data_dir} holds no ledger; pass the --data-dir of a peer")
    author = None if who == "any" else (Identity.load(data_dir / KEY_FILE).peer_id if who == "self" else who)
    blocks = BlockStore(data_dir / "blocks")
    with Ledger.open(data_dir, readonly=True) as led:
        snapshots = sorted(led.entries(author=author, kind="snapshot"), key=lambda e: e.ts, reverse=True)
        for e in snapshots:
            if blocks.has(e.body["model"]):
                return str(e.body["model"])
    raise UserError(f"--latest {who}: no snapshot of {'any peer' if author is None else author} is kept in "
                    f"{data_dir}; try --latest self, or --model-cid with --from PEER_MULTIADDR")
