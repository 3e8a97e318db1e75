"""Fixtures for the storage tests: deterministic content and the UnixFS vectors."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import SHARED

VECTORS_PATH = SHARED / "vectors" / "unixfs-cids.json"


def content(seed: str, size: int) -> bytes:
    """The vectors' content function (../shared/vectors/README.md)."""
    n = (size + 31) // 32
    return b"".join(hashlib.sha256(f"{seed}:{i}".encode("ascii")).digest() for i in range(n))[:size]


def load_vectors() -> list[dict]:
    return json.loads(VECTORS_PATH.read_text())["vectors"]


@pytest.fixture(scope="session")
def big_content() -> bytes:
    """content("learnae", 64 MiB): every vector's content is a prefix of it."""
    return content("learnae", max(v["size"] for v in load_vectors()))
