"""The fault suite's smoke, in make test: a short run of ``make faults`` keeps every guarantee.

The mutants (``--mutant``) are not run here: with a handful of applications the batch a mutant loses
may hold nothing the checks can see, so such a test would pass or fail by timing (README).

Each run is the real driver (tests/faults/driver.py) as a process of its own: the four services, a
second instance of some, a private broker and a private PostgreSQL of fault slot 7, the SMTP sink and
a misbehaving webhook receiver. The faults are given by hand, so each run hits the moments named.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.e2e

SLOT = "7"  # a fault slot of its own: its broker, databases and ports collide with nothing in the suite


def fault_run(*arguments: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EGOV_TEST_SLOT": os.environ.get("EGOV_TEST_SLOT", "0")}
    command = [sys.executable, "-m", "tests.faults.driver", "--slot", SLOT, "--seed", "7", "--applications", "8"]
    done = subprocess.run([*command, *arguments], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    print(done.stdout[-4000:])
    return done


def test_a_short_fault_run_with_crashes_at_the_dangerous_moments_keeps_every_guarantee() -> None:
    done = fault_run(
        "--fault",
        "crash_point:budget:consumer.after_commit@1",
        "--fault",
        "crash_point:notify:notify.after_delivery@2",
        "--fault",
        "sigkill:postgres@3+1.5",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "seed=7: ok" in done.stdout
    assert "died there" in done.stdout, "a crash point was reached"
