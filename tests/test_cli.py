"""The CLI run as a user runs it: a subprocess, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from learnae import __version__
from learnae.cli.main import cli
from learnae.identity import Identity


def run(learnae_cli, *args, input: bytes | None = None):
    return subprocess.run([*learnae_cli, *args], capture_output=True, input=input, timeout=120)


def assert_one_line_error(proc, code: int, *needles: str):
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("learnae: error: "), err
    for needle in needles:
        assert needle in lines[0]


def test_version_and_help(learnae_cli, learnae_home):
    proc = run(learnae_cli, "--version")
    assert proc.returncode == 0 and proc.stdout.decode().strip() == f"learnae {__version__}"
    proc = run(learnae_cli, "--help")
    out = proc.stdout.decode()
    assert proc.returncode == 0
    for group in ("peer", "key", "config", "ledger", "data", "ipfs", "scenario"):
        assert f"  {group} " in out


def test_key_new_show_export_import_round_trip(learnae_cli, learnae_home, tmp_path):
    proc = run(learnae_cli, "key", "new")
    assert proc.returncode == 0, proc.stderr
    peer_id = proc.stdout.decode().strip()
    assert peer_id.startswith("12D3KooW")
    assert (os.stat(learnae_home / "identity.key").st_mode & 0o777) == 0o600

    shown = json.loads(run(learnae_cli, "key", "show", "--format", "json").stdout)
    assert shown["peer_id"] == peer_id

    exported = tmp_path / "peer.key"
    assert run(learnae_cli, "key", "export", "-o", str(exported)).returncode == 0
    assert (os.stat(exported).st_mode & 0o777) == 0o600
    assert Identity.from_bytes(exported.read_bytes()).peer_id == peer_id

    other = tmp_path / "other"
    proc = run(learnae_cli, "key", "import", str(exported), "--data-dir", str(other))
    assert proc.returncode == 0 and proc.stdout.decode().strip() == peer_id
    assert Identity.load(other / "identity.key").peer_id == peer_id


def test_key_new_refuses_to_overwrite(learnae_cli, learnae_home):
    assert run(learnae_cli, "key", "new").returncode == 0
    assert_one_line_error(run(learnae_cli, "key", "new"), 2, "--force")


def test_open_key_file_is_refused_with_the_fix(learnae_cli, learnae_home):
    assert run(learnae_cli, "key", "new").returncode == 0
    os.chmod(learnae_home / "identity.key", 0o644)
    assert_one_line_error(run(learnae_cli, "key", "show"), 2, "chmod 600")


def test_missing_key_says_how_to_create_one(learnae_cli, learnae_home):
    assert_one_line_error(run(learnae_cli, "key", "show"), 2, "learnae key new")


def test_import_of_garbage_names_the_file(learnae_cli, learnae_home, tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"hello")
    assert_one_line_error(run(learnae_cli, "key", "import", str(bad)), 2, str(bad))


def test_config_show_reports_values_and_sources(learnae_cli, learnae_home):
    learnae_home.mkdir()
    (learnae_home / "config.toml").write_text("merge_k = 4\n")
    env = {**os.environ, "LEARNAE_RULE": "median"}
    proc = subprocess.run([*learnae_cli, "config", "show", "--format", "json", "--merge-every", "3"],
                          capture_output=True, env=env)
    # config show takes no tuning flags: that is a usage error, one line, exit 2.
    assert_one_line_error(proc, 2, "--merge-every")
    proc = subprocess.run([*learnae_cli, "config", "show", "--format", "json"], capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {r["key"]: r for r in json.loads(proc.stdout)}
    assert rows["merge_k"]["value"] == 4 and rows["merge_k"]["source"].startswith("file ")
    assert rows["rule"] == {**rows["rule"], "value": "median", "source": "env LEARNAE_RULE"}
    assert rows["data_dir"]["source"] == "env LEARNAE_HOME"
    assert all(r["unit"] for r in rows.values())


def test_bad_config_value_is_exit_2_naming_the_key(learnae_cli, learnae_home):
    learnae_home.mkdir()
    (learnae_home / "config.toml").write_text("merge_every = -3\n")
    assert_one_line_error(run(learnae_cli, "config", "show"), 2, "merge_every", "config.toml")


def test_unknown_command_and_option_are_one_line_usage_errors(learnae_cli, learnae_home):
    assert_one_line_error(run(learnae_cli, "frobnicate"), 2, "frobnicate", "--help")
    assert_one_line_error(run(learnae_cli, "key", "show", "--colour"), 2, "--colour")


def test_bad_log_spec_is_a_config_error(learnae_cli, learnae_home):
    env = {**os.environ, "LEARNAE_LOG": "info,learnae.gossip=loud"}
    proc = subprocess.run([*learnae_cli, "key", "new"], capture_output=True, env=env)
    assert_one_line_error(proc, 2, "LEARNAE_LOG", "loud")


def test_cli_runner_fast_path(learnae_home):
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 0
    assert "merge_every" in result.output


def test_help_does_not_import_tensorflow_or_libp2p(learnae_home):
    code = "import sys; from learnae.cli.main import cli; print('tensorflow' in sys.modules, 'libp2p' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
