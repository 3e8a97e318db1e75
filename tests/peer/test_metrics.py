"""Prometheus metrics: per-peer registries, served on loopback only when asked."""

from __future__ import annotations

import socket
import urllib.request

from learnae.peer.metrics import PeerMetrics


def test_two_peers_in_one_process_do_not_share_counters():
    a, b = PeerMetrics(), PeerMetrics()
    a.steps.inc(3)
    a.rejected.labels(reason="bad-signature").inc()
    assert b"learnae_steps_total 3.0" in a.render()
    assert b"learnae_steps_total 0.0" in b.render()
    assert b'learnae_rejected_messages_total{reason="bad-signature"} 1.0' in a.render()


def test_endpoint_serves_metrics_on_loopback():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = PeerMetrics()
    m.merges.inc()
    m.serve(port)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    assert b"learnae_merges_total 1.0" in body
