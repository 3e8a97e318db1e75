"""Prometheus metrics of one peer (served only with ``--metrics-port``).

Each peer owns a private :class:`prometheus_client.CollectorRegistry`, so
several peers in one process (tests, the Keras callback) never collide, and
nothing is exported unless the user asks for it. The endpoint binds to
127.0.0.1 only.

Example:
    >>> m = PeerMetrics()
    >>> m.steps.inc(10)
    >>> m.rejected.labels(reason="bad-signature").inc()
    >>> b"learnae_steps_total 10.0" in m.render()
    True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

__all__ = ["PeerMetrics"]

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PeerMetrics:
    """The counters, gauges and histograms a peer updates as it runs."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.steps = Counter("learnae_steps", "Local training steps taken", registry=r)
        self.samples = Counter("learnae_samples", "Samples trained on locally", registry=r)
        self.merges = Counter("learnae_merges", "Merges of neighbour snapshots", registry=r)
        self.merges_skipped = Counter(
            "learnae_merges_skipped", "Merges a robust rule skipped, keeping the local model (too few neighbours)",
            registry=r)
        self.snapshots = Counter("learnae_snapshots_published", "Snapshots published", registry=r)
        self.bytes_in = Counter("learnae_bytes_received", "Block bytes fetched from other peers", registry=r)
        self.bytes_out = Counter("learnae_bytes_sent", "Block bytes served to other peers", registry=r)
        self.peers = Gauge("learnae_peers", "Connected peers", registry=r)
        self.loss = Gauge("learnae_loss", "Latest local training loss", registry=r)
        self.accuracy = Gauge("learnae_accuracy", "Latest accuracy on the local validation split", registry=r)
        self.rejected = Counter(
            "learnae_rejected_messages", "Messages and data rejected from remote peers", ["reason"], registry=r
        )
        self.announce_latency = Histogram(
            "learnae_announcement_latency_seconds", "Time from an entry's timestamp to its arrival here",
            buckets=_LATENCY_BUCKETS_S, registry=r,
        )
        self.fetch_latency = Histogram(
            "learnae_fetch_latency_seconds", "Time to fetch one neighbour snapshot",
            buckets=_LATENCY_BUCKETS_S, registry=r,
        )

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)

    def serve(self, port: int) -> None:
        """Serve ``/metrics`` on 127.0.0.1:``port`` from a daemon thread."""
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
