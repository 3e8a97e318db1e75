"""`learnae ipfs ...` as a user runs it."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from click.testing import CliRunner

from learnae.cli.main import cli
from learnae.storage.unixfs import CHUNK_BYTES, unixfs_cid
from tests.storage.conftest import content


def run(*args: str, data_dir) -> "click.testing.Result":
    return CliRunner().invoke(cli, ["ipfs", *args, "--data-dir", str(data_dir)], catch_exceptions=False)


def test_add_prints_the_cid_alone_and_ls_pin_gc_work(tmp_path):
    f = tmp_path / "w.bin"
    data = content("cli", 2 * CHUNK_BYTES + 9)
    f.write_bytes(data)
    res = run("add", str(f), data_dir=tmp_path / "d")
    assert res.exit_code == 0 and res.stdout == f"{unixfs_cid(data)}\n"
    cid = res.stdout.strip()
    listed = json.loads(run("ls", "--format", "json", data_dir=tmp_path / "d").stdout)
    assert listed == [{"cid": cid, "local": True}]
    assert run("gc", data_dir=tmp_path / "d").stdout == "removed 0 blocks\n"
    assert run("unpin", cid, data_dir=tmp_path / "d").exit_code == 0
    assert run("gc", data_dir=tmp_path / "d").stdout == "removed 4 blocks\n"
    res = run("add", "--only-hash", str(f), data_dir=tmp_path / "d")
    assert res.stdout.strip() == cid
    assert run("gc", data_dir=tmp_path / "d").stdout == "removed 0 blocks\n"  # only-hash stored nothing


def test_cat_writes_the_bytes(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"hello learnae")
    cid = run("add", str(f), data_dir=tmp_path).stdout.strip()
    assert run("cat", cid, data_dir=tmp_path).stdout_bytes == b"hello learnae"


def test_bad_cid_is_a_user_error(tmp_path, learnae_cli):
    res = subprocess.run([*learnae_cli, "ipfs", "cat", "not-a-cid", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "not-a-cid" in res.stderr and "is not a CID" in res.stderr


def test_missing_content_without_peers_says_how_to_fetch(tmp_path, learnae_cli):
    cid = str(unixfs_cid(b"nobody stored this"))
    res = subprocess.run([*learnae_cli, "ipfs", "get", cid, "-o", str(tmp_path / "o"), "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "--from" in res.stderr


def test_serve_then_get_from_another_process(tmp_path, learnae_cli):
    data = content("served", 3 * CHUNK_BYTES + 1)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    cid = run("add", str(src), data_dir=tmp_path / "a").stdout.strip()
    server = subprocess.Popen([*learnae_cli, "ipfs", "serve", "--data-dir", str(tmp_path / "a")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline().strip()
        assert first.startswith("/ip4/127.0.0.1/tcp/") and "/p2p/12D3KooW" in first
        out = tmp_path / "got.bin"
        res = subprocess.run([*learnae_cli, "ipfs", "get", cid, "-o", str(out), "--from", first,
                              "--data-dir", str(tmp_path / "b"), "--timeout", "60"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert out.read_bytes() == data
        # now local: cat needs no peer
        res = subprocess.run([*learnae_cli, "ipfs", "cat", cid, "--data-dir", str(tmp_path / "b")],
                             capture_output=True, timeout=60)
        assert res.stdout == data
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            pytest.fail("ipfs serve did not stop on SIGTERM")



def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell without job control starts `cmd &`


@pytest.mark.parametrize("started", ["in the foreground", "in the background"])
def test_serve_stops_on_ctrl_c_as_it_says_without_an_error(tmp_path, learnae_cli, started):
    server = subprocess.Popen([*learnae_cli, "ipfs", "serve", "--data-dir", str(tmp_path / "a")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=_ignore_sigint if started == "in the background" else None)
    try:
        assert server.stdout.readline().startswith("/ip4/127.0.0.1/tcp/")
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
    err = server.stderr.read()
    assert "served 0 blocks" in err and "error" not in err and "Traceback" not in err, err

def test_bad_from_address_is_a_user_error(tmp_path, learnae_cli):
    cid = str(unixfs_cid(b"x"))
    res = subprocess.run([*learnae_cli, "ipfs", "get", cid, "-o", str(tmp_path / "o"), "--from", "127.0.0.1:4011",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "127.0.0.1:4011" in res.stderr and "/p2p/" in res.stderr
