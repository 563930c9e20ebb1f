"""The suite's fresh processes are forked from a process that has imported torch (tests/forkserver.py):
each must still be a process of its own, with what `subprocess.Popen` asked for, ended as it reports."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from support import Forked, popen, run_process

SHOW = ("import os, sys; print(os.getpid(), os.getsid(0), os.getcwd(), os.environ['MARK'], sys.argv[1:],"
        " repr(sys.stdin.read()), flush=True); sys.exit(3)")


def test_a_forked_python_has_the_files_directory_environment_arguments_and_session_asked_for(tmp_path):
    proc = popen([sys.executable, "-c", SHOW, "a", "b c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ, "MARK": "here"},
                 start_new_session=True)
    assert isinstance(proc, Forked) or os.environ.get("GANTUI_TESTS_EXEC") == "1"
    out, err = proc.communicate("typed", timeout=60)
    assert err == "" and proc.returncode == 3
    pid, session, cwd, mark, *rest = out.split()
    assert int(pid) == int(session) == proc.pid and cwd == str(tmp_path) and mark == "here"
    assert " ".join(rest) == "['a', 'b c'] 'typed'"


def test_a_forked_python_ends_by_a_signal_or_an_exception_as_a_fresh_one_does(tmp_path):
    proc = popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                 stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "up\n" and proc.poll() is None
    proc.terminate()
    assert proc.wait(30) == -signal.SIGTERM
    proc.stdout.close()

    script = tmp_path / "script.py"
    script.write_text("import sys\nprint(sys.argv[1:], __name__)\nraise KeyboardInterrupt\n")
    done = run_process([sys.executable, str(script), "x"], capture_output=True, text=True, timeout=60)
    assert done.stdout == "['x'] __main__\n" and "KeyboardInterrupt" in done.stderr
    assert done.returncode == -signal.SIGINT  # as python itself exits on an uncaught Ctrl-C

    done = run_process([sys.executable, "-m", "gantui", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: gantui")
