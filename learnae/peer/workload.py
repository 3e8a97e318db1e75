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

from learnae.data.datasets import Dataset, split_dataset
from learnae.data.shards import select_shard, split_local_shard
from learnae.peer.config import PeerConfig

__all__ = ["Workload", "prepare_workload", "split_local_data", "VALIDATION_SHARE"]

VALIDATION_SHARE = 0.1  # of the peer's own shard, for its local validation metric


@dataclass(frozen=True, slots=True, eq=False)
class Workload:
    """A ready-to-train model and the data around it.

    Attributes:
        trainer: a :class:`learnae.training.KerasTrainer` on the local shard.
        shard: the local training samples.
        validation: the local validation slice (never trained on).
        test: the swarm-wide held-out test part.
        names: snapshot tensor names, layer order.
        fingerprint: the model fingerprint (hash of names, shapes, dtypes).
    """

    trainer: object
    shard: Dataset
    validation: Dataset
    test: Dataset
    names: list[str]
    fingerprint: str


def split_local_data(cfg: PeerConfig, dataset: Dataset) -> tuple[Dataset, Dataset, Dataset]:
    """``(train, validation, test)`` for this peer: numpy only, no TensorFlow.

    Raises:
        UserError: a bad shard or partition.
    """
    splits = split_dataset(dataset, seed=cfg.seed)
    shard = select_shard(splits.train, cfg.shard, partition=cfg.partition, seed=cfg.seed)
    local = split_local_shard(shard, seed=cfg.seed, validation=VALIDATION_SHARE)
    return local.train, local.validation, splits.test


def prepare_workload(cfg: PeerConfig, dataset: Dataset) -> Workload:
    """Cut this peer's shard from ``dataset`` and build its model (loads TensorFlow).

    Raises:
        UserError: a bad shard, partition or model spec, or data that do not fit the model.
    """
    from learnae.storage.snapshot import fingerprint
    from learnae.training import KerasTrainer

    train, validation, test = split_local_data(cfg, dataset)
    trainer = KerasTrainer.from_spec(
        cfg.model, train.x, train.y, seed=cfg.seed, optimizer=cfg.optimizer,
        learning_rate=cfg.learning_rate, momentum=cfg.momentum, batch_size=cfg.batch_size,
    )
    specs = trainer.tensor_specs()
    names = [s[0] for s in specs]
    fp = fingerprint(names, [s[1] for s in specs], [s[2] for s in specs])
    return Workload(trainer, train, validation, test, names, fp)
