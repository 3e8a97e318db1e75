"""`learnae ledger ...` as a user runs it: CliRunner for the fast cases, subprocesses for exit codes."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from learnae.cli.main import cli
from learnae.identity import KEY_FILE
from learnae.ledger import Ledger
from tests.ledger.chains import SWARM, ident, make_chain


@pytest.fixture
def home(tmp_path):
    """A data dir whose ledger holds 2 foreign chains (B merged A) and one own entry."""
    home = tmp_path / "home"
    ident(9).save(home / KEY_FILE)
    a = make_chain(ident(1), 4)
    b = make_chain(ident(2), 4, parents=[a[2].cid])
    with Ledger.open(home, ident(9), swarm=SWARM) as led:
        for e in a + b:
            led.receive(e)
        led.append("join", {"fingerprint": "ff", "framework": "keras", "addrs": []})
    return home, a, b


def run(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_show_filters_and_json(home):
    h, a, b = home
    rows = json.loads(run("ledger", "show", "--data-dir", str(h), "--format", "json"))
    assert len(rows) == 9 and {r["cid"] for r in rows} >= {str(e.cid) for e in a + b}
    snaps = json.loads(run("ledger", "show", "--data-dir", str(h), "--kind", "snapshot",
                           "--author", ident(2).peer_id, "--format", "json"))
    assert [r["seq"] for r in snaps] == [2, 3] and snaps[0]["body"]["parents"][0]["entry"] == str(a[2].cid)
    text = run("ledger", "show", "--data-dir", str(h), "--kind", "join")
    assert len(text.strip().splitlines()) == 3 and "join" in text



def test_show_latest_lists_the_newest_entries_first(home):
    h, a, b = home
    rows = json.loads(run("ledger", "show", "--data-dir", str(h), "--latest", "--format", "json"))
    assert len(rows) == 9 and rows[0]["kind"] == "join" and rows[0]["author"] == ident(9).peer_id  # just appended
    assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)
    newest = json.loads(run("ledger", "show", "--data-dir", str(h), "--kind", "snapshot", "--latest", "--limit", "2",
                            "--format", "json"))
    assert {r["cid"] for r in newest} == {str(a[3].cid), str(b[3].cid)}  # each author's newest snapshot
    oldest_first = json.loads(run("ledger", "show", "--data-dir", str(h), "--kind", "snapshot", "--limit", "2",
                                  "--format", "json"))
    assert {r["seq"] for r in oldest_first} == {2, 3} and len({r["author"] for r in oldest_first}) == 1
    text = run("ledger", "show", "--data-dir", str(h), "--latest", "--limit", "1")
    assert len(text.strip().splitlines()) == 1 and ident(9).peer_id in text


def test_peer_eval_latest_names_the_newest_snapshot_still_kept(home):
    from learnae.errors import UserError
    from learnae.peer.evaluate import kept_snapshot
    from learnae.storage.blockstore import BlockStore

    h, a, b = home
    older = a[2].body["model"]  # a[3]'s model is newer, but no store here keeps it
    BlockStore(h / "blocks").put_block(older, f"model-{ident(1).peer_id}-2".encode())
    assert kept_snapshot(h, ident(1).peer_id) == str(older)
    assert kept_snapshot(h, "any") == str(older)
    with pytest.raises(UserError, match="no snapshot of .* is kept"):
        kept_snapshot(h, "self")  # this peer announced none

def test_credits_and_trace(home):
    h, a, b = home
    credits = json.loads(run("ledger", "credits", "--data-dir", str(h), "--format", "json"))
    by = {c["author"]: c for c in credits}
    assert by[ident(1).peer_id]["merged"] == 1 and by[ident(1).peer_id]["merged_weight"] == 0.5
    assert credits[0]["author"] == ident(1).peer_id  # merged by someone: the best score
    lin = json.loads(run("ledger", "trace", str(b[3].body["model"]), "--data-dir", str(h), "--format", "json"))
    assert {x["author"] for x in lin["authors"]} == {ident(1).peer_id, ident(2).peer_id}
    assert len(lin["shards"]) == 2
    assert "2 authors" in run("ledger", "trace", str(b[3].body["model"]), "--data-dir", str(h))


def test_export_import_between_data_dirs(home, tmp_path):
    h, a, b = home
    car = tmp_path / "ledger.car"
    run("ledger", "export", str(car), "--data-dir", str(h))
    run("ledger", "verify", str(car))
    other = tmp_path / "other"
    report = json.loads(run("ledger", "import", str(car), "--data-dir", str(other), "--format", "json"))
    assert report["statuses"] == {"accepted": 9}
    assert "9 entries from 3 authors" in run("ledger", "verify", "--data-dir", str(other))


def test_verify_exit_codes_as_a_subprocess(home, learnae_cli, tmp_path):
    h, a, b = home
    ok = subprocess.run([*learnae_cli, "ledger", "verify", str(h)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 9 entries"), ok.stderr
    # flip one byte inside a signature of a stored entry, keeping the record checksum valid
    import struct
    import zlib

    log = h / "ledger" / "received.log"
    data = bytearray(log.read_bytes())
    length = struct.unpack_from(">I", data, 0)[0]
    first = data[8:8 + length]
    first[-70] ^= 0x01
    data[8:8 + length] = first
    data[4:8] = struct.pack(">I", zlib.crc32(bytes(first)))
    log.write_bytes(bytes(data))
    bad = subprocess.run([*learnae_cli, "ledger", "verify", str(h)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "learnae: error: ledger" in bad.stderr and "entry #" in bad.stderr
    assert "bad-signature" in bad.stderr or "missing-prev" in bad.stderr
    nope = subprocess.run([*learnae_cli, "ledger", "trace", "not-a-cid", "--data-dir", str(h)],
                          capture_output=True, text=True, timeout=60)
    assert nope.returncode == 2 and nope.stderr.count("\n") == 1 and "MODEL_CID" in nope.stderr
    empty = subprocess.run([*learnae_cli, "ledger", "show", "--data-dir", str(tmp_path / "none")],
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and "no ledger here" in empty.stderr
