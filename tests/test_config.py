"""PeerConfig: precedence flag > env > file > default, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnae.errors import ConfigError
from learnae.peer.config import PeerConfig, config_fields, load_config


def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_set(tmp_path):
    cfg, sources = load_config({"data_dir": tmp_path}, env={})
    assert cfg.merge_every == PeerConfig.__dataclass_fields__["merge_every"].default
    assert cfg.data_dir == tmp_path
    assert sources["merge_every"] == "default"
    assert sources["data_dir"] == "flag --data-dir"


def test_every_field_has_a_unit_and_help():
    for f in config_fields():
        assert f.metadata["unit"], f.name
        assert f.metadata["help"], f.name


def test_precedence_flag_over_env_over_file_over_default(tmp_path):
    path = write_config(tmp_path, "merge_every = 3\npublish_every = 7\nrule = 'median'\n")
    env = {"LEARNAE_MERGE_EVERY": "5", "LEARNAE_PUBLISH_EVERY": "9"}
    cfg, sources = load_config({"data_dir": tmp_path, "merge_every": 11}, env=env)
    assert (cfg.merge_every, sources["merge_every"]) == (11, "flag --merge-every")
    assert (cfg.publish_every, sources["publish_every"]) == (9, "env LEARNAE_PUBLISH_EVERY")
    assert (cfg.rule, sources["rule"]) == ("median", f"file {path}")
    assert sources["batch_size"] == "default"


def test_data_dir_from_learnae_home(tmp_path):
    cfg, sources = load_config({}, env={"LEARNAE_HOME": str(tmp_path / "h")})
    assert cfg.data_dir == tmp_path / "h"
    assert sources["data_dir"] == "env LEARNAE_HOME"


def test_explicit_config_file_replaces_the_data_dir_one(tmp_path):
    write_config(tmp_path, "merge_k = 3\n")
    other = tmp_path / "other.toml"
    other.write_text("merge_k = 5\n")
    cfg, sources = load_config({"data_dir": tmp_path}, env={}, config_file=other)
    assert cfg.merge_k == 5 and sources["merge_k"] == f"file {other}"


def test_lists_from_env_and_file(tmp_path):
    pid = "12D3KooWFpVy5g2qfmLKTcSvnK1nDijrshbDCbimmy8m2QW6P3i5"
    a, b = f"/ip4/127.0.0.1/tcp/4001/p2p/{pid}", f"/ip4/127.0.0.1/tcp/4002/p2p/{pid}"
    write_config(tmp_path, f"bootstrap = ['{a}']\n")
    cfg, _ = load_config({"data_dir": tmp_path}, env={})
    assert cfg.bootstrap == [a]
    cfg, _ = load_config({"data_dir": tmp_path}, env={"LEARNAE_BOOTSTRAP": f"{a},{b}"})
    assert cfg.bootstrap == [a, b]


@pytest.mark.parametrize("text, key", [
    ("merge_evry = 3\n", "merge_evry"),          # unknown key (typo)
    ("merge_every = 'often'\n", "merge_every"),  # wrong type
    ("merge_every = 0\n", "merge_every"),        # out of range
    ("mdns = 'maybe'\n", "mdns"),
    ("rule = 'avg'\n", "rule"),
    ("shard = '4/4'\n", "shard"),
    ("partition = 'classes:0'\n", "partition"),
    ("listen = 'localhost:4010'\n", "listen"),
    ("bootstrap = ['/ip4/127.0.0.1/tcp/4010']\n", "bootstrap"),  # no /p2p/<peer-id>
    ("weight_cap = 1.5\n", "weight_cap"),
    ("data_dir = '/elsewhere'\n", "data_dir"),
])
def test_bad_file_values_name_the_key(tmp_path, text, key):
    write_config(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config({"data_dir": tmp_path}, env={})
    assert err.value.key == key
    assert key in str(err.value)
    assert "config.toml" in str(err.value)


def test_bad_env_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config({"data_dir": tmp_path}, env={"LEARNAE_BATCH_SIZE": "-1"})
    assert err.value.key == "batch_size"
    assert "LEARNAE_BATCH_SIZE" in str(err.value)


def test_bad_flag_value_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match="--shard"):
        load_config({"data_dir": tmp_path, "shard": "2/1"}, env={})


def test_broken_toml_is_a_config_error(tmp_path):
    write_config(tmp_path, "merge_every = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({"data_dir": tmp_path}, env={})


def test_missing_explicit_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config({"data_dir": tmp_path}, env={}, config_file=tmp_path / "nope.toml")


def test_config_is_frozen(tmp_path):
    cfg, _ = load_config({"data_dir": tmp_path}, env={})
    with pytest.raises(AttributeError):
        cfg.merge_every = 1  # type: ignore[misc]


def test_docs_list_every_key():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text()
    for f in config_fields():
        assert f"| `{f.name}` |" in docs, f"docs/config.md does not document {f.name}"


def test_docs_show_the_real_defaults():
    import dataclasses

    docs = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text()
    for f in config_fields():
        if f.default is dataclasses.MISSING or f.name == "data_dir":
            continue
        shown = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
        assert f"| `{f.name}` | `LEARNAE_{f.name.upper()}` | `{shown}` |" in docs, f.name
