"""LEARNAE_LOG parsing: a default level plus per-subsystem levels."""

import logging

import pytest

from learnae.errors import ConfigError
from learnae.log import configure_logging, parse_log_spec


def test_parse_default_and_per_logger():
    assert parse_log_spec("info,learnae.gossip=debug") == ("info", {"learnae.gossip": "debug"})
    assert parse_log_spec("") == ("warning", {})


def test_unknown_level_names_the_part():
    with pytest.raises(ConfigError, match="verbose"):
        parse_log_spec("verbose")


def test_configure_sets_subsystem_levels():
    configure_logging("error,learnae.gossip=debug")
    assert logging.getLogger("learnae.gossip").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("learnae.ledger").getEffectiveLevel() == logging.ERROR
    configure_logging("")
    logging.getLogger("learnae.gossip").setLevel(logging.NOTSET)
