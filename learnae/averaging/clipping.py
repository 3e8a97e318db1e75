"""Bounding what one contribution can do: distances to the local model, and clipping.

A weight cap bounds a neighbour's *share* of a merge, not how far it can pull:
half of a model scaled by -10 (or filled with 1e30) is still a ruined model.
Clipping bounds the *distance* instead, as CenteredClip and ClippedGossip do: a
contribution farther than ``radius`` from the local model is moved onto the
sphere of that radius around it (same direction, shorter), so whatever a
neighbour sends moves the merged model by at most ``weight * radius``.

Example:
    >>> import numpy as np
    >>> local = [np.zeros(2, np.float32)]
    >>> far = Contribution([np.array([30.0, 40.0], np.float32)], samples=1, author="A")
    >>> (near,), clipped = clip(local, [far], radius=5.0)
    >>> near.weights[0].tolist(), clipped
    ([3.0, 4.0], [True])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from learnae.averaging.contribution import Contribution

__all__ = ["norm", "distances", "clip"]


def norm(tensors: Sequence[np.ndarray]) -> float:
    """The L2 norm of a model (all tensors as one vector), in float64."""
    return float(np.sqrt(sum(float(np.sum(np.square(t, dtype=np.float64))) for t in tensors)))


def distances(local: Sequence[np.ndarray], contributions: Sequence[Contribution]) -> np.ndarray:
    """L2 distance of each contribution to ``local`` (float64; ``inf`` if it overflows)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = [np.sqrt(sum(float(np.sum(np.square(c.weights[i].astype(np.float64) - t))) for i, t in enumerate(local)))
               for c in contributions]
    return np.array([d if np.isfinite(d) else np.inf for d in out], np.float64)


def clip(local: Sequence[np.ndarray], contributions: Sequence[Contribution],
         radius: float) -> tuple[list[Contribution], list[bool]]:
    """Contributions moved to within ``radius`` of ``local``, and which of them were clipped.

    A contribution at distance ``d > radius`` becomes ``local + (c - local) * radius / d``;
    the others are returned unchanged. ``radius`` must be finite and >= 0.
    """
    if not (radius >= 0 and np.isfinite(radius)):
        raise ValueError(f"radius must be finite and >= 0, got {radius!r}")
    out, clipped = [], []
    for c, d in zip(contributions, distances(local, contributions)):
        if d <= radius:
            out.append(c)
            clipped.append(False)
            continue
        scale = radius / d if np.isfinite(d) else 0.0  # an overflowing model says nothing: keep none of it
        moved = [(t.astype(np.float64) + (np.asarray(w, np.float64) - t) * scale).astype(t.dtype)
                 for t, w in zip(local, c.weights)]
        out.append(dataclasses.replace(c, weights=moved))
        clipped.append(True)
    return out, clipped
