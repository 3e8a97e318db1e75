"""``learnae peer eval``: fetch any snapshot by CID and measure it on a dataset.

The snapshot carries tensors, not an architecture, so the caller names the
model spec (the swarm's ``--model``); the snapshot's fingerprint must match it.
Blocks come from the local store, or over Bitswap from ``--from`` peers through
a short-lived host with a throwaway identity (:mod:`learnae.peer.exchange`).
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from learnae.errors import FetchError, UserError

__all__ = ["EvalResult", "evaluate_snapshot"]

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
    from learnae.storage.cid import parse_cid
    from learnae.storage.snapshot import decode_snapshot, fingerprint
    from learnae.storage.store import EmbeddedStore
    from learnae.training.models import check_model_spec, load_model
    from learnae.training.evaluation import evaluate_model
    from learnae.training.weights import tensor_specs, write_weights

    cid = parse_cid(model_cid)
    check_model_spec(model)
    ds = load_dataset(dataset)
    part = ds if split == "all" else getattr(split_dataset(ds, seed=seed), split)
    store = EmbeddedStore(data_dir / "blocks")
    try:
        data = trio.run(_fetch, store, cid, tuple(providers))
    except trio.TooSlowError:
        raise FetchError(f"snapshot {model_cid} not delivered within {FETCH_TIMEOUT_S:.0f} s by {', '.join(providers)}") from None
    except KeyError:
        raise FetchError(f"snapshot {model_cid} is not in {data_dir}; pass --from PEER_MULTIADDR to fetch it") from None
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
