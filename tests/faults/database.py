"""A PostgreSQL server of the fault run's own, so the suite may SIGKILL and SIGSTOP it.

The shared cluster (deploy/postgres.sh, port 55432) serves every other tree and test suite on the
machine; killing it would be a fault injected into all of them. This one lives in the slot's state
directory, listens on loopback at ``55440 + slot``, and is made once per ``make faults`` with the same
admin login (CREATEDB, CREATEROLE) the suites use, so ``tests.support.service_database`` works on it
unchanged. Debian's binaries; the server runs as the ``postgres`` user, as the package's does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PG_ROOT = Path("/usr/lib/postgresql")


def pg_bin(name: str) -> str:
    versions = sorted((p for p in PG_ROOT.iterdir() if (p / "bin" / name).exists()), key=lambda p: int(p.name))
    if not versions:
        raise RuntimeError(f"no {name} under {PG_ROOT}: deploy/postgres.sh installs Debian's PostgreSQL")
    return str(versions[-1] / "bin" / name)


def as_postgres(*command: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["runuser", "-u", "postgres", "--", *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])}: {done.stdout}{done.stderr}")
    return done


@dataclass(frozen=True)
class PrivatePostgres:
    home: Path  # owned by postgres: data/, the socket and the server log
    port: int
    shared_admin_dsn: str  # the admin login of the shared cluster: its name and password are reused

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def admin_dsn(self) -> str:
        parts = urlsplit(self.shared_admin_dsn)
        netloc = parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._make()
        options = (
            f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c max_connections=200"
            " -c shared_buffers=64MB -c fsync=on"
        )
        log = self.home / "server.log"
        as_postgres(pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(log), "-w", "-t", "120", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            as_postgres(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def _make(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        shutil.chown(self.home, "postgres", "postgres")
        as_postgres(pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=peer", "--auth-host=trust")
        self.start_bare()
        parts = urlsplit(self.shared_admin_dsn)
        user, password = parts.username, parts.password
        statement = f"CREATE ROLE {user} LOGIN CREATEDB CREATEROLE PASSWORD '{password}'"
        as_postgres(pg_bin("psql"), "-h", str(self.home), "-p", str(self.port), "-qAt", "-c", statement)
        with (self.data / "pg_hba.conf").open("w") as hba:  # passwords from here on, as on the shared cluster
            hba.write("local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n")
        self.stop()

    def start_bare(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1"
        log = str(self.home / "server.log")  # not our pipes: the server outlives pg_ctl and would hold them
        as_postgres(pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    # --- faults ------------------------------------------------------------------------------------

    def processes(self) -> list[int]:
        """The postmaster and every backend and worker it forked."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(entry.name))
        return [postmaster, *children]

    def kill(self) -> None:
        """A power cut: every process of the server at once, no checkpoint, no goodbye to clients."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        postmaster = self.processes()[0]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(postmaster):
            time.sleep(0.05)
        # Dead, but maybe not reaped yet by whoever inherited it: a zombie's pid in the lock files
        # would make the restart refuse, as if the server still ran.
        for lock in (self.data / "postmaster.pid", self.home / f".s.PGSQL.{self.port}.lock"):
            lock.unlink(missing_ok=True)

    def pause(self) -> list[int]:
        frozen = self.processes()
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return frozen

    @staticmethod
    def resume(frozen: list[int]) -> None:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
