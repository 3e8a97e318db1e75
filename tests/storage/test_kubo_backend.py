"""The Kubo backend is chosen by config and fails clearly without a daemon (its contract runs in
test_store_contract.py when LEARNAE_TEST_KUBO_API is set)."""

from __future__ import annotations

import socket

import pytest

from learnae.errors import KuboError
from learnae.peer.config import load_config
from learnae.storage.kubo import KuboStore
from learnae.storage.store import EmbeddedStore, open_store


pytestmark = pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


async def test_unreachable_daemon_is_a_clear_kubo_error():
    api = f"/ip4/127.0.0.1/tcp/{_dead_port()}"
    store = KuboStore(api, timeout_s=2)
    with pytest.raises(KuboError, match="unreachable") as exc:
        await store.put(b"x")
    assert api in str(exc.value) and "ipfs daemon" in str(exc.value)


def test_config_selects_the_backend(tmp_path):
    cfg, _ = load_config(cli={"data_dir": tmp_path}, env={})
    assert isinstance(open_store(cfg), EmbeddedStore)
    cfg, _ = load_config(cli={"data_dir": tmp_path, "storage": "kubo", "kubo_api": "/ip4/127.0.0.1/tcp/5999"}, env={})
    store = open_store(cfg)
    assert isinstance(store, KuboStore) and store.api == "/ip4/127.0.0.1/tcp/5999"
