"""The suite's runs are forked from a process that has imported torch (tests/forkserver.py): each
must still be a process of its own, with what `subprocess.Popen` asked for, ended as it reports."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from support import Forked, popen, run_process

FORKED = os.environ.get("GANTUI_TESTS_EXEC") != "1"
SHOW = ("import json, os, sys, numpy, torch; print(json.dumps({'pid': os.getpid(), 'session': os.getsid(0),"
        " 'cwd': os.getcwd(), 'mark': os.environ['MARK'], 'fds': sorted(os.listdir('/proc/self/fd')),"
        " 'draw': int(numpy.random.randint(1 << 30)), 'argv': sys.argv[1:], 'stdin': sys.stdin.read()}));"
        " sys.exit(3)")


def test_a_forked_python_has_the_files_directory_environment_arguments_and_session_asked_for(tmp_path):
    shown = []
    for _ in range(2):
        proc = popen([sys.executable, "-c", SHOW, "a", "b c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ, "MARK": "here"},
                     start_new_session=True)
        assert isinstance(proc, Forked) == FORKED
        out, err = proc.communicate("typed", timeout=60)
        assert err == "" and proc.returncode == 3
        got = json.loads(out)
        assert got["pid"] == got["session"] == proc.pid and got["cwd"] == str(tmp_path) and got["mark"] == "here"
        assert got["argv"] == ["a", "b c"] and got["stdin"] == "typed"
        assert got["fds"] == ["0", "1", "2", "3"]  # its stdio, and the listing's own: nothing of the server's
        shown.append(got["draw"])
    assert shown[0] != shown[1]  # numpy's global stream is its own, as in a process started from scratch


def test_a_forked_python_ends_by_a_signal_or_an_exception_as_a_fresh_one_does(tmp_path):
    proc = popen([sys.executable, "-c", "import time, torch; print('up', flush=True); time.sleep(60)"],
                 stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "up\n" and proc.poll() is None
    proc.terminate()
    assert proc.wait(30) == -signal.SIGTERM
    proc.stdout.close()

    script = tmp_path / "script.py"
    script.write_text("import sys\nprint(sys.argv, __name__, __file__)\nraise KeyboardInterrupt\n")
    done = run_process([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.stdout == f"[{str(script)!r}] __main__ {script}\n" and "KeyboardInterrupt" in done.stderr
    assert done.returncode == -signal.SIGINT  # as python itself exits on an uncaught Ctrl-C

    refused = run_process([sys.executable, "-m", "gantui", "sample", str(tmp_path / "none.pt"), "--out", "s.png"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "no such file" in refused.stderr
