"""Every command that writes a data dir or an output file, pointed at a place nobody can write.

Two kinds of place: under /proc (the kernel refuses to create anything there) and
through a regular file (``afile/x``). Each command must answer as for any bad
input: exit code 2, one line ``learnae: error: ...`` naming the path, no traceback
(learnae/fsutil.py ``prepare_dir`` / ``prepare_output``). ``peer start`` and
``scenario run`` run as real subprocesses; the rest through ``learnae.cli.main.main``
in this process (the same code path, exit code and stderr, without a Python start
each).
"""

from __future__ import annotations

import logging
import subprocess

import pytest

from learnae.cli.main import main
from learnae.identity import KEY_FILE, Identity
from learnae.ledger import Ledger
from learnae.storage.unixfs import import_file

BAD = {
    "proc": lambda tmp: "/proc/learnae-cannot-write/x",
    "through-a-file": lambda tmp: str(tmp / "afile" / "x"),
}


@pytest.fixture
def world(tmp_path, learnae_home):
    """A data dir with a key, a ledger and one stored file; a scenario, a ledger CAR, a run dir."""
    (tmp_path / "afile").write_text("a regular file, not a directory")
    ident = Identity.generate()
    ident.save(learnae_home / KEY_FILE)
    with Ledger.open(learnae_home, ident, swarm="testswarm") as led:
        led.append("join", {"fingerprint": "ff", "framework": "keras", "addrs": []})
        led.export_car(tmp_path / "ledger.car")
    (tmp_path / "peer.pem").write_bytes(Identity.generate().to_bytes("pem-pkcs8"))
    (tmp_path / "hello.txt").write_text("hello")
    (tmp_path / "s.yaml").write_text("name: t\nduration: 5s\npeers: 1\n")
    (tmp_path / "run").mkdir()
    assert main_exit(["ipfs", "add", str(tmp_path / "hello.txt")])[0] == 0
    return {"FILE": str(tmp_path / "hello.txt"), "KEY": str(tmp_path / "peer.pem"), "CAR": str(tmp_path / "ledger.car"),
            "YAML": str(tmp_path / "s.yaml"), "RUN": str(tmp_path / "run"), "PEER": ident.peer_id,
            "CID": str(import_file(tmp_path / "hello.txt"))}


def main_exit(argv: list[str]) -> tuple[int, str]:
    """Run the CLI in this process; its exit code. Logging set-up is restored for the next test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        main(argv)
        return 0, ""
    except SystemExit as exc:
        return exc.code, ""
    finally:
        root.handlers[:], root.level = handlers, level


COMMANDS = {  # name -> argv with {P} for the unwritable path, {NAME} for the world's files
    "key new --data-dir": ["key", "new", "--data-dir", "{P}"],
    "key import --data-dir": ["key", "import", "{KEY}", "--data-dir", "{P}"],
    "key export -o": ["key", "export", "-o", "{P}"],
    "data split -o": ["data", "split", "digits", "--shards", "2", "-o", "{P}"],
    "data publish --data-dir": ["data", "publish", "digits", "--shards", "2", "--data-dir", "{P}"],
    "ledger export": ["ledger", "export", "{P}"],
    "ledger import --data-dir": ["ledger", "import", "{CAR}", "--data-dir", "{P}"],
    "ipfs add --data-dir": ["ipfs", "add", "{FILE}", "--data-dir", "{P}"],
    "ipfs get -o": ["ipfs", "get", "{CID}", "-o", "{P}"],
    "ipfs pin --data-dir": ["ipfs", "pin", "{CID}", "--data-dir", "{P}"],
    "ipfs serve --data-dir": ["ipfs", "serve", "--data-dir", "{P}"],
    "peer eval --data-dir": ["peer", "eval", "--model-cid", "{CID}", "--data-dir", "{P}",
                             "--from", "/ip4/127.0.0.1/tcp/9/p2p/{PEER}"],
    "scenario from-ledger -o": ["scenario", "from-ledger", "{CAR}", "-o", "{P}"],
    "scenario compose -o": ["scenario", "compose", "{YAML}", "-o", "{P}"],
    "scenario compare --plot": ["scenario", "compare", "{RUN}", "--plot", "{P}"],
}


def _argv(template: list[str], world: dict, path: str) -> list[str]:
    return [a.replace("{P}", path).format(**world) for a in template]


def _one_line(err: str, path: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("learnae: error: "), err
    assert path in lines[0] and ("a file, not a directory" in lines[0] or "cannot create" in lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("where", sorted(BAD))
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_with_an_unwritable_output_is_a_one_line_exit_2(name, where, world, tmp_path, capsys):
    path = BAD[where](tmp_path)
    capsys.readouterr()
    code, _ = main_exit(_argv(COMMANDS[name], world, path))
    err = capsys.readouterr().err
    assert code == 2, err
    _one_line(err, path)


@pytest.mark.parametrize("where", sorted(BAD))
def test_peer_start_and_scenario_run_as_processes(where, world, tmp_path, learnae_cli):
    path = BAD[where](tmp_path)
    for argv in (["peer", "start", "--data-dir", path, "--listen", "/ip4/127.0.0.1/tcp/0"],
                 ["scenario", "run", world["YAML"], "--out", path, "--quiet"]):
        proc = subprocess.run([*learnae_cli, *argv], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        line = _one_line(proc.stderr, path)
        assert ("--data-dir" if argv[0] == "peer" else "--out") in line
