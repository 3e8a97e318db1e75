"""What a peer trains: its data shard, its validation and test splits, its model.

Everything here runs before the peer touches the network, so a bad
``--dataset``, ``--shard`` or ``--model`` stops the command with a one-line
error (exit 2) and nothing else happens.

The dataset is first split (same seed on every peer) into train / validation /
test; the peer's shard is cut from the train part, so shards of one swarm are
disjoint and the test part is held out from every peer. The peer validates on
its own data (a slice of its shard), as a real peer with private data must; the
global test part is used only for reporting (``test_accuracy`` in metrics), which
simulations and ``learnae peer eval`` rely on.
"""

from __future__ import annotations

from dataclasses import dataclass

from learnae.data.datasets import Dataset
from learnae.data.shards import prepare_peer_data, split_local_shard
from learnae.peer.config import PeerConfig

__all__ = ["Workload", "prepare_workload", "cut_shard", "VALIDATION_SHARE"]

VALIDATION_SHARE = 0.1  # of the peer's own shard, for its local validation metric


@dataclass(frozen=True, slots=True, eq=False)
class Workload:
    """A ready-to-train model and the data around it.

    Attributes:
        trainer: a :class:`learnae.training.KerasTrainer` on the local shard.
        source: the peer's whole shard (training + validation), as announced in the ledger.
        shard: the local training samples.
        validation: the local validation slice (never trained on).
        test: the swarm-wide held-out test part.
        names: snapshot tensor names, layer order.
        fingerprint: the model fingerprint (hash of names, shapes, dtypes).
    """

    trainer: object
    source: Dataset
    shard: Dataset
    validation: Dataset
    test: Dataset
    names: list[str]
    fingerprint: str


def cut_shard(cfg: PeerConfig, dataset: Dataset) -> tuple[Dataset, Dataset]:
    """``(this peer's shard, the swarm-wide test part)`` of a local dataset: numpy only.

    Raises:
        UserError: a bad shard or partition.
    """
    parts = prepare_peer_data(cfg.dataset, cfg.shard, partition=cfg.partition, seed=cfg.seed, dataset=dataset)
    return parts.train, parts.test


def prepare_workload(cfg: PeerConfig, shard: Dataset, test: Dataset | None = None) -> Workload:
    """Build the model for this peer's ``shard`` (loads TensorFlow).

    Args:
        shard: the peer's data (from :func:`cut_shard`, or fetched by CID).
        test: a held-out test set, if the peer has one (a fetched shard has none).

    Raises:
        UserError: a bad model spec, or data that do not fit the model.
    """
    from learnae.storage.snapshot import fingerprint
    from learnae.training import KerasTrainer

    local = split_local_shard(shard, seed=cfg.seed, validation=VALIDATION_SHARE)
    trainer = KerasTrainer.from_spec(
        cfg.model, local.train.x, local.train.y, seed=cfg.seed, optimizer=cfg.optimizer,
        learning_rate=cfg.learning_rate, momentum=cfg.momentum, batch_size=cfg.batch_size,
    )
    specs = trainer.tensor_specs()
    names = [s[0] for s in specs]
    fp = fingerprint(names, [s[1] for s in specs], [s[2] for s in specs])
    return Workload(trainer, shard, local.train, local.validation, local.test if test is None else test,
                    names, fp)
