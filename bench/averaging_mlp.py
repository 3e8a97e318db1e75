"""A small numpy MLP (one hidden ReLU layer, softmax output) for many peers at once.

The simulator trains N peers in lock-step, so every parameter carries a leading peer
axis: ``W1 (N, d, h)``, ``b1 (N, h)``, ``W2 (N, h, c)``, ``b2 (N, c)``. One batched
matmul steps all peers together, which keeps an 8-peer run on the digits dataset to a
few seconds on two cores. Parameter order and shapes match a Keras
``Dense(h, relu) -> Dense(c)`` model, so settings found here carry over to the peer
runtime's models. A research harness of :mod:`bench.averaging_sim`, not part of the
installed library.
"""

from __future__ import annotations

import numpy as np

__all__ = ["init_params", "loss_and_grads", "predict", "accuracy"]


def init_params(rng: np.random.Generator, n_peers: int, n_in: int, hidden: int, n_out: int) -> list[np.ndarray]:
    """Glorot-uniform weights and zero biases (Keras' defaults), one set per peer.

    Every peer starts from the same initial model, as peers of a learnae swarm do (they
    all begin from the swarm's published initial snapshot).
    """

    def glorot(fan_in: int, fan_out: int) -> np.ndarray:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)

    w1, w2 = glorot(n_in, hidden), glorot(hidden, n_out)
    return [
        np.repeat(w1[None], n_peers, axis=0),
        np.zeros((n_peers, hidden), np.float32),
        np.repeat(w2[None], n_peers, axis=0),
        np.zeros((n_peers, n_out), np.float32),
    ]


def _forward(params: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w1, b1, w2, b2 = params
    h = np.maximum(np.matmul(x, w1) + b1[:, None, :], 0.0)
    return h, np.matmul(h, w2) + b2[:, None, :]


def loss_and_grads(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Mean cross-entropy per peer and its gradients.

    Args:
        params: the four stacked parameter arrays.
        x: ``(N, B, d)`` one batch per peer.
        y: ``(N, B)`` integer labels.

    Returns:
        ``(loss (N,), grads)`` with grads shaped like ``params``.
    """
    w1, _, w2, _ = params
    h, logits = _forward(params, x)
    logits = logits - logits.max(axis=2, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=2, keepdims=True)
    n, b = y.shape
    rows = np.arange(b)
    loss = -np.log(np.maximum(p[np.arange(n)[:, None], rows[None, :], y], 1e-12)).mean(axis=1)
    d_logits = p
    d_logits[np.arange(n)[:, None], rows[None, :], y] -= 1.0
    d_logits /= b
    g_w2 = np.matmul(h.transpose(0, 2, 1), d_logits)
    g_b2 = d_logits.sum(axis=1)
    d_h = np.matmul(d_logits, w2.transpose(0, 2, 1)) * (h > 0)
    g_w1 = np.matmul(x.transpose(0, 2, 1), d_h)
    g_b1 = d_h.sum(axis=1)
    return loss, [g_w1, g_b1, g_w2, g_b2]


def predict(params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Class predictions ``(N, T)`` of every peer on the same inputs ``x (T, d)``."""
    xs = np.broadcast_to(x, (params[0].shape[0],) + x.shape)
    return _forward(params, xs)[1].argmax(axis=2)


def accuracy(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Test accuracy of every peer, shape ``(N,)``."""
    return (predict(params, x) == y[None, :]).mean(axis=1)
