"""Bitswap 1.2.0 (serve and fetch blocks) on a py-libp2p host that the caller runs."""

from learnae.storage.bitswap.engine import PROTOCOLS, Bitswap
from learnae.storage.bitswap.fetch import FetchStats, fetch_dag

__all__ = ["Bitswap", "PROTOCOLS", "FetchStats", "fetch_dag"]
