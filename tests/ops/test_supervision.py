"""The stack's supervision (deploy/lib.sh ensure_running, used by deploy/stack.sh start) on a dummy
service: no PostgreSQL, no broker, nothing of another tree is touched.

The dummy answers /health over HTTP like a service. The checks run in a helper process that makes
itself the child subreaper and never reaps: a killed dummy stays a zombie there, as one did under
the machine's init, where ``kill -0`` still succeeded and ``start`` said "already running".
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

DUMMY = textwrap.dedent(
    """
    import http.server, sys

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
    """
)

DRIVER = textwrap.dedent(
    """
    import ctypes, json, os, signal, subprocess, sys, time

    repo, state, port = sys.argv[1], sys.argv[2], sys.argv[3]
    ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphans come here, unreaped
    pidfile, logfile, dummy = f"{state}/dummy.pid", f"{state}/dummy.log", f"{state}/dummy.py"
    env = {**os.environ, "EGOV_STATE_DIR": state, "EGOV_CACHE_DIR": f"{state}/cache", "SUPERVISE_GRACE_SECONDS": "3"}
    start = f'ensure_running dummy {pidfile} {logfile} "http_healthy {port}" {sys.executable} {dummy} {port}'

    def sh(script):
        done = subprocess.run(["bash", "-c", f'source "{repo}/deploy/lib.sh"; {script}'], env=env,
                              capture_output=True, text=True, timeout=90)
        return {"rc": done.returncode, "err": done.stderr}

    def pid():
        return int(open(pidfile).read().split()[0])

    def state_of(p):
        try:
            return open(f"/proc/{p}/stat").read().rsplit(") ", 1)[1].split()[0]
        except FileNotFoundError:
            return "gone"

    def parent_of(p):
        return int(open(f"/proc/{p}/stat").read().rsplit(") ", 1)[1].split()[1])

    def healthy():
        return sh(f"wait_healthy 15 http_healthy {port}")["rc"] == 0

    out = {}
    try:
        out["first"] = sh(start)
        first = pid()
        out["first_healthy"] = healthy()
        out["first_own_session"] = os.getsid(first) == first and os.getpgid(first) == first
        out["first_detached"] = parent_of(first) == os.getpid()  # orphaned at once: the starting shell is gone
        out["again"] = sh(start)
        out["again_same_pid"] = pid() == first

        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while state_of(first) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        out["killed_state"] = state_of(first)
        out["zombie_alive"] = sh(f"pid_alive {pidfile}")["rc"] == 0
        out["after_kill"] = sh(start)
        second = pid()
        out["restarted"] = second != first
        out["second_healthy"] = healthy()

        os.kill(second, signal.SIGSTOP)  # hangs: the pid runs, its health endpoint does not answer
        out["after_hang"] = sh(start)
        third = pid()
        out["replaced_hung"] = third != second and state_of(second) in ("Z", "gone")
        out["third_healthy"] = healthy()

        out["stop"] = sh(f"stop_pidfile dummy {pidfile}")
        out["stopped"] = state_of(third) in ("Z", "gone")
    finally:
        for p in [int(w) for w in open(pidfile).read().split()[:1]] if os.path.exists(pidfile) else []:
            try:
                os.killpg(p, signal.SIGKILL)
            except OSError:
                pass
        while True:  # now reap every orphan that came here
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    time.sleep(0.1)
                    continue
            except ChildProcessError:
                break
        print(json.dumps(out))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    state = tmp_path_factory.mktemp("supervision")
    (state / "dummy.py").write_text(DUMMY)
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(REPO), str(state), str(free_port())],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_started_service_runs_detached_in_its_own_session_and_a_second_start_leaves_it(
    supervised: dict[str, object],
) -> None:
    assert supervised["first"]["rc"] == 0  # type: ignore[index]
    assert supervised["first_healthy"] is True
    assert supervised["first_own_session"] is True, "setsid: its own session and process group"
    assert supervised["first_detached"] is True, "its parent is not the shell that started it"
    assert "already running" in supervised["again"]["err"]  # type: ignore[index]
    assert supervised["again_same_pid"] is True


def test_a_killed_service_left_a_zombie_is_down_and_start_brings_it_back(supervised: dict[str, object]) -> None:
    assert supervised["killed_state"] == "Z", "the helper keeps the killed dummy as a zombie"
    assert supervised["zombie_alive"] is False, "a zombie is not a running service"
    assert "already running" not in supervised["after_kill"]["err"]  # type: ignore[index]
    assert supervised["after_kill"]["rc"] == 0  # type: ignore[index]
    assert supervised["restarted"] is True
    assert supervised["second_healthy"] is True


def test_a_hung_service_that_fails_its_health_check_is_replaced_and_stop_leaves_nothing(
    supervised: dict[str, object],
) -> None:
    assert "fails its health check" in supervised["after_hang"]["err"]  # type: ignore[index]
    assert supervised["replaced_hung"] is True
    assert supervised["third_healthy"] is True
    assert supervised["stop"]["rc"] == 0  # type: ignore[index]
    assert supervised["stopped"] is True
