"""learnae.data: datasets, partitioners, shards and shard manifests.

Layering: numpy, scikit-learn (the bundled ``digits``), safetensors and dag-cbor;
never TensorFlow, so ``learnae data ...`` commands start fast. Publishing and
fetching shards take any store with ``async put``/``get`` (``learnae.storage``).

Example:
    >>> from learnae.data import load_dataset, split_dataset, select_shard
    >>> parts = split_dataset(load_dataset("digits"), seed=0)
    >>> mine = select_shard(parts.train, "0/4", partition="classes:3", seed=0)
    >>> len(set(mine.y.tolist()))
    3
"""

from learnae.data.datasets import (
    Dataset,
    DatasetError,
    Splits,
    load_dataset,
    parse_dataset_spec,
    split_dataset,
)
from learnae.data.manifest import (
    ShardManifest,
    decode_manifest,
    encode_manifest,
    fetch_dataset,
    fetch_shard,
    publish_shards,
)
from learnae.data.shards import (
    InvalidShardError,
    decode_shard,
    encode_shard,
    prepare_peer_data,
    select_shard,
    split_local_shard,
)

__all__ = [
    "Dataset",
    "DatasetError",
    "Splits",
    "load_dataset",
    "parse_dataset_spec",
    "split_dataset",
    "select_shard",
    "prepare_peer_data",
    "split_local_shard",
    "encode_shard",
    "decode_shard",
    "InvalidShardError",
    "ShardManifest",
    "encode_manifest",
    "decode_manifest",
    "publish_shards",
    "fetch_shard",
    "fetch_dataset",
]
