"""One peer per data dir, and status can tell whether it runs."""

import subprocess
import sys

import pytest

from learnae.errors import UserError
from learnae.peer.lock import DataDirLock, holder_pid

_HOLD = "import sys, time; from learnae.peer.lock import DataDirLock\nwith DataDirLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)"


def test_second_peer_on_one_data_dir_is_refused(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"held"
        assert holder_pid(tmp_path) == proc.pid
        with pytest.raises(UserError, match=f"in use by another peer \\(pid {proc.pid}\\)"):
            with DataDirLock(tmp_path):
                pass
    finally:
        proc.kill()
        proc.wait()
    # kill -9 released the lock: nobody holds it, and a new peer may take it.
    assert holder_pid(tmp_path) is None
    with DataDirLock(tmp_path):
        assert holder_pid(tmp_path) is not None
