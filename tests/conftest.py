"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# Keep TensorFlow quiet in every process the tests start.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def learnae_home(tmp_path, monkeypatch) -> Path:
    """A fresh data dir, also exported as LEARNAE_HOME, with no LEARNAE_* leaking in."""
    for name in list(os.environ):
        if name.startswith("LEARNAE_") and name not in ("LEARNAE_LOG", "LEARNAE_KUBO_VENV", "LEARNAE_TEST_KUBO_API"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("LEARNAE_HOME", str(home))
    return home


@pytest.fixture
def learnae_cli():
    """The argv prefix that runs the installed CLI as a user would (a subprocess)."""
    return [sys.executable, "-m", "learnae.cli.main"]
