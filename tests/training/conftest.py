"""Shared, expensive fixtures for the training tests: import Keras once per session."""

from __future__ import annotations

import pytest

from learnae.data import load_dataset, split_dataset


@pytest.fixture(scope="session")
def keras():
    import keras as k

    return k


@pytest.fixture(scope="session")
def digits():
    """Digits split into train / validation / test (seed 0)."""
    return split_dataset(load_dataset("digits"), seed=0)
