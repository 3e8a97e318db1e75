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
    # config show takes every setting flag of `peer start`, so the `flag --x` source can be seen
    proc = subprocess.run([*learnae_cli, "config", "show", "--format", "json", "--merge-every", "3",
                           "--bootstrap", "/ip4/127.0.0.1/tcp/4010/p2p/12D3KooWFpVy5g2qfmLKTcSvnK1nDijrshbDCbimmy8m2QW6P3i5",
                           "--no-dht"], capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {r["key"]: r for r in json.loads(proc.stdout)}
    assert rows["merge_every"] == {**rows["merge_every"], "value": 3, "source": "flag --merge-every"}
    assert rows["dht"]["value"] is False and rows["dht"]["source"] == "flag --dht"
    assert len(rows["bootstrap"]["value"]) == 1 and rows["bootstrap"]["source"] == "flag --bootstrap"
    assert rows["merge_k"]["value"] == 4 and rows["merge_k"]["source"].startswith("file ")
    assert rows["rule"] == {**rows["rule"], "value": "median", "source": "env LEARNAE_RULE"}
    assert rows["data_dir"]["source"] == "env LEARNAE_HOME"
    assert all(r["unit"] for r in rows.values())
    # a bad flag value is the same one-line error as in `peer start`
    assert_one_line_error(subprocess.run([*learnae_cli, "config", "show", "--merge-every", "-1"],
                                         capture_output=True, env=env), 2, "merge_every", "flag --merge-every")


def test_peer_start_print_config_shows_the_settings_and_starts_nothing(learnae_cli, learnae_home):
    proc = run(learnae_cli, "peer", "start", "--print-config", "--rule", "krum", "--data-dir",
               str(learnae_home / "never"))
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.decode().splitlines()}
    assert "krum" in lines["rule"] and lines["rule"].endswith("flag --rule")
    assert lines["merge_every"].endswith("default") and set(lines) >= {"listen", "faults", "data_dir"}
    assert not (learnae_home / "never").exists()  # printing created no data dir, opened no port


@pytest.mark.parametrize("args, needles", [
    (["--listen", "/ip4/127.0.0.1/tcp/99999"], ["listen", "99999", "0-65535"]),
    (["--bootstrap", "/ip4/127.0.0.1/tcp/70000/p2p/12D3KooWFpVy5g2qfmLKTcSvnK1nDijrshbDCbimmy8m2QW6P3i5"],
     ["bootstrap", "70000"]),
    (["--faults", "nope.json"], ["faults", "nope.json", "no such file"]),
])
def test_peer_start_rejects_bad_input_before_tensorflow_loads(learnae_cli, learnae_home, tmp_path, args, needles):
    # A TensorFlow import alone takes seconds: here any import of it (or of keras) fails loudly
    for name in ("tensorflow", "keras"):
        (tmp_path / "trap" / name).mkdir(parents=True)
        (tmp_path / "trap" / name / "__init__.py").write_text(f"raise SystemExit('{name} was imported')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "trap")}
    proc = subprocess.run([*learnae_cli, "peer", "start", "--data-dir", str(learnae_home), *args],
                          capture_output=True, env=env, timeout=120)
    assert_one_line_error(proc, 2, *needles)


def test_peer_eval_checks_from_before_anything_else(learnae_cli, learnae_home):
    proc = run(learnae_cli, "peer", "eval", "--model-cid", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq",
               "--from", "garbage")
    assert_one_line_error(proc, 2, "--from", "'garbage'", "/p2p/")
    proc = run(learnae_cli, "peer", "eval", "--model-cid", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq")
    assert_one_line_error(proc, 1, "is not in", "--from")
    assert not learnae_home.exists()  # a failed read creates no data dir


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
