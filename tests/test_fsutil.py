"""atomic_write: the target holds the old content or the new, also with concurrent writers."""

from __future__ import annotations

import threading

from learnae.fsutil import atomic_write


def test_concurrent_writers_of_one_file_never_fail_and_leave_no_temporaries(tmp_path):
    # Two threads pinning the same block used to share one temporary name: one rename failed
    # with FileNotFoundError (seen in the fake Kubo daemon serving two peers).
    target = tmp_path / "pins" / "block"
    errors = []

    def write(i: int) -> None:
        try:
            for _ in range(200):
                atomic_write(target, f"writer {i}".encode(), durable=False)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_text() in {f"writer {i}" for i in range(4)}
    assert [p.name for p in target.parent.iterdir()] == ["block"]


def test_mode_is_applied_from_creation(tmp_path):
    atomic_write(tmp_path / "secret", b"k", mode=0o600)
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
