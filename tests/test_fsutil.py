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


def test_prepare_dir_and_output_name_the_option_the_path_and_what_is_in_the_way(tmp_path):
    import pytest

    from learnae.errors import UserError
    from learnae.fsutil import prepare_dir, prepare_output

    (tmp_path / "afile").write_text("x")
    cases = [
        (prepare_dir, tmp_path / "afile" / "d", f"{tmp_path / 'afile'} is a file, not a directory"),
        (prepare_dir, "/proc/learnae-x/d", "cannot create a directory in /proc"),
        (prepare_dir, "/proc", "cannot create files in /proc"),
        (prepare_output, tmp_path / "afile" / "o.car", f"{tmp_path / 'afile'} is a file, not a directory"),
        (prepare_output, "/proc/o.car", "cannot create files in /proc"),
        (prepare_output, tmp_path, "is a directory; pass a file path"),
    ]
    for prepare, path, why in cases:
        with pytest.raises(UserError) as info:
            prepare(path, what="--opt")
        msg = str(info.value)
        assert msg.startswith(f"--opt {path}: ") and why in msg and "\n" not in msg, msg
    # a writable place is created (parents too) and left as it was: no probe file stays behind
    assert prepare_dir(tmp_path / "a" / "b", what="--out") == tmp_path / "a" / "b"
    assert prepare_output(tmp_path / "c" / "f.bin", what="-o") == tmp_path / "c" / "f.bin"
    assert list((tmp_path / "a" / "b").iterdir()) == [] and list((tmp_path / "c").iterdir()) == []
