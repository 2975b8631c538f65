"""Test helpers for the real-infrastructure suites: databases, topics, service processes, an SMTP sink."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import TopicPartition
from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from pydantic import SecretStr

from runtime.kafka import KafkaAccess, headers_of, make_producer, make_reader
from schemas.envelope import Envelope
from schemas.events import IntakeWatermark
from schemas.topics import APPLICATIONS, Topic

REPO = Path(__file__).resolve().parents[1]
# The local throwaway CA and every principal's password, made by deploy/kafka.sh (see deploy/lib.sh).
SECRETS_DIR = Path(os.environ.get("EGOV_SECRETS_DIR", REPO / ".state" / "secrets"))
# The operator principal: a super user on the broker. The harness plays it to create topics and to write
# hand-made events; services always run as their own principals.
OPERATOR = "admin"


def required_env(name: str) -> str:
    """Integration tests need the real broker and database; without them they fail, never skip."""
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the suite with `make test` (deploy/test.sh), which starts them")
    return value


def kafka_access(bootstrap: str, principal: str = OPERATOR) -> KafkaAccess:
    """How ``principal`` reaches a local broker: SCRAM-SHA-512 over TLS, verified against the local CA."""
    password_file = SECRETS_DIR / "kafka" / f"{principal}.password"
    if not password_file.exists():
        raise RuntimeError(f"{password_file} is missing: run the suite with `make test`, which creates it")
    password = SecretStr(password_file.read_text().strip())
    return KafkaAccess(bootstrap, principal, password, ca_file=SECRETS_DIR / "tls" / "ca.pem")


def as_principal(kafka: KafkaAccess, principal: str) -> KafkaAccess:
    """The same broker, reached as another principal."""
    return kafka_access(kafka.bootstrap, principal)


def service_kafka_env(kafka: KafkaAccess, service: str) -> dict[str, str]:
    """The settings that make a service process connect as its own principal."""
    return as_principal(kafka, service).env(service.upper() + "_")


def service_kafka_settings(kafka: KafkaAccess, service: str) -> dict[str, str]:
    """The same, as keyword arguments of the service's settings class (``kafka_username=...``)."""
    return {name.lower(): value for name, value in as_principal(kafka, service).env("").items()}


@contextlib.asynccontextmanager
async def private_broker(name: str, slot: int) -> AsyncIterator[KafkaAccess]:
    """A broker of a test's own, freshly formatted and removed afterwards: for tests that play a
    service's part (writing hand-made events) and must not leave them in the suite's shared log."""
    from runtime.kafka import ensure_topics
    from schemas.topics import ALL_TOPICS

    port = 29700 + 20 * TEST_SLOT + 2 * slot
    env = {
        **os.environ,
        "EGOV_STATE_DIR": str(REPO / ".state" / f"test{TEST_SLOT}-{name}"),
        "EGOV_KAFKA_PORT": str(port),
    }

    def kafka_sh(command: str) -> None:
        done = subprocess.run([str(REPO / "deploy" / "kafka.sh"), command], env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"kafka.sh {command}: {done.stderr}"

    await asyncio.to_thread(kafka_sh, "reset")
    await asyncio.to_thread(kafka_sh, "start")
    kafka = kafka_access(f"127.0.0.1:{port}")
    try:
        await ensure_topics(kafka, ALL_TOPICS)
        yield kafka
    finally:
        await asyncio.to_thread(kafka_sh, "reset")


def dsn_for(admin_dsn: str, database: str, *, role: str | None = None) -> str:
    """The admin DSN pointed at ``database``; with ``role``, logging in as that role (dev password)."""
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + database
    if role is None:
        return dsn
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}://{role}:{dev_password(role)}@{rest.rsplit('@', 1)[-1]}"


def dev_password(role: str) -> str:
    return f"{role}-dev-only"


@dataclass(frozen=True)
class ServiceDatabase:
    """A service's database as deployed: owned by one role, used at run time by another."""

    runtime: str  # DSN of the runtime login: DML on the tables, no DDL, no other database
    owner: str  # DSN of the owner role: migrates, grants the runtime login its rights


async def service_database(admin_dsn: str, database: str) -> ServiceDatabase:
    """A fresh ``database`` owned by the role ``<database>_owner``, which only it and the login
    ``<database>`` may connect to (deploy/postgres.sh's shape). Roles are cluster-wide, so they
    are named after the slot's database and never collide with another suite's."""
    owner, runtime = f"{database}_owner", database
    conn = await asyncpg.connect(admin_dsn)
    try:
        for role in (owner, runtime):
            # A role of an earlier run keeps its attributes (only a superuser may restate SUPERUSER).
            exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role)
            verb, attributes = ("ALTER", "") if exists else ("CREATE", "NOSUPERUSER NOCREATEDB NOCREATEROLE")
            await conn.execute(f"{verb} ROLE \"{role}\" LOGIN {attributes} PASSWORD '{dev_password(role)}'")
        # PostgreSQL 15 hands a database only to a role one is a member of; membership also lets the
        # harness read every table through the admin DSN.
        if not await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", owner):
            await conn.execute(f'GRANT "{owner}" TO CURRENT_USER')
        await drop_database(conn, database)
        await conn.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
        await conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
        await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{runtime}"')
    finally:
        await conn.close()
    return ServiceDatabase(dsn_for(admin_dsn, database, role=runtime), dsn_for(admin_dsn, database, role=owner))


async def drop_database(conn: asyncpg.Connection, database: str) -> None:
    """Drop, waiting out a previous test's sessions that are still closing: the admin login (no superuser)
    may not terminate sessions of the roles it made, so FORCE alone can be refused for a moment."""
    for attempt in range(50):
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            return
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
            if attempt == 49:
                raise
            await asyncio.sleep(0.2)


async def fresh_database(admin_dsn: str, database: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await drop_database(conn, database)
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    return dsn_for(admin_dsn, database)


async def read_topic(
    kafka: KafkaAccess, topic: Topic, until: Callable[[list[Envelope]], bool], timeout: float = 30.0
) -> list[Envelope]:
    """Every envelope on the topic from the beginning, read until ``until`` holds or the time is up."""
    consumer = make_reader(kafka, "test-reader")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic.name, p) for p in (consumer.partitions_for_topic(topic.name) or ())]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic.name, p) for p in consumer.partitions_for_topic(topic.name) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: list[Envelope] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                seen.extend(Envelope.from_bytes(r.value) for r in records)
            if until(seen):
                return seen
        return seen
    finally:
        await consumer.stop()


@dataclass
class SmtpSink:
    """A real SMTP server on loopback that keeps what it receives."""

    port: int
    messages: list[Message] = field(default_factory=list)
    server: asyncio.AbstractServer | None = None

    async def handle_DATA(self, server: SMTP, session: Any, envelope: SmtpEnvelope) -> str:
        content = envelope.original_content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        self.messages.append(message_from_bytes(raw, policy=policy.default))
        return "250 OK"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SMTP(self, hostname="test-sink"), "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    def for_application(self, application_id: str) -> list[Message]:
        return [m for m in self.messages if m["X-Application-Id"] == application_id]


# EGOV_TEST_SLOT (set by deploy/test.sh) moves ports and databases aside for parallel suites.
TEST_SLOT = int(os.environ.get("EGOV_TEST_SLOT", "0"))
SERVICE_PORTS = {name: 18001 + i + 100 * TEST_SLOT for i, name in enumerate(("intake", "review", "budget", "notify"))}
SMTP_TEST_PORT = 18025 + 100 * TEST_SLOT
# The budget service generates this key on first start; its public half lies beside it (.pub).
SIGNING_KEY_FILE = REPO / ".state" / f"test{TEST_SLOT}" / "keys" / "decision-signing.pem"
ADMIN_TOKEN = "test-budget-admin-token"


def spawn_service(service: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m services.<service>`` as a child process, its output appended to ``log_path``."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
    return subprocess.Popen([sys.executable, "-m", f"services.{service}"], cwd=REPO, env=env, stdout=log, stderr=log)


async def wait_http_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"process on port {port} exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"port {port} not ready after {timeout}s")


@dataclass
class ServiceProcesses:
    """The four services as real processes, pointed at the test broker and test databases."""

    kafka: KafkaAccess
    dsns: dict[str, str]
    smtp_port: int
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    exit_codes: dict[str, list[int]] = field(default_factory=dict)
    # The owner roles' DSNs: a service migrates with its owner and then runs as its login (``dsns``).
    owner_dsns: dict[str, str] = field(default_factory=dict)
    # Where each one serves HTTP; a test that runs services of its own beside the suite's moves them.
    http_ports: dict[str, int] = field(default_factory=lambda: dict(SERVICE_PORTS))
    # Set for every service (the fault suite's timeouts, a mutant's PYTHONPATH).
    extra_env: dict[str, str] = field(default_factory=dict)
    # The fault suite's crash points: each instance arms its own under <crash_points>/<instance>.
    crash_points: Path | None = None

    def port_of(self, instance: str) -> int:
        """An instance is a service's name, or "<service>@<n>" for its n-th instance (10 ports up each)."""
        service, _, n = instance.partition("@")
        return self.http_ports[service] + 10 * (int(n or 1) - 1)

    def env(self, name: str) -> dict[str, str]:
        prefix = name.upper() + "_"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INTAKE_", "REVIEW_", "BUDGET_", "NOTIFY_"))}
        env.update(service_kafka_env(self.kafka, name))
        env.update(
            {
                prefix + "DATABASE_URL": self.dsns[name],
                prefix + "HTTP_PORT": str(self.http_ports[name]),
                prefix + "ENVIRONMENT": "test",
                prefix + "SHUTDOWN_GRACE_SECONDS": "20",
                prefix + "KAFKA_SESSION_TIMEOUT_MS": "6000",
                # A test that trips the failed-authentication throttle holds its address back briefly only.
                prefix + "HTTP_AUTH_FAILURE_WINDOW_SECONDS": "5",
                "BUDGET_ADMIN_TOKEN": ADMIN_TOKEN,
                "BUDGET_SIGNING_KEY_FILE": str(SIGNING_KEY_FILE),
                "INTAKE_PUBLIC_BASE_URL": f"http://127.0.0.1:{SERVICE_PORTS['intake']}",
                "REVIEW_INTAKE_URL": f"http://127.0.0.1:{SERVICE_PORTS['intake']}",
                "NOTIFY_SMTP_PORT": str(self.smtp_port),
                "NOTIFY_FIRST_RETRY_SECONDS": "0.2",
                "NOTIFY_ALLOW_LOOPBACK_CALLBACKS": "true",  # the test receivers are on 127.0.0.1
            }
        )
        if name in self.owner_dsns:
            env[prefix + "DATABASE_OWNER_URL"] = self.owner_dsns[name]
        env.update(self.extra_env)
        return env

    def start(self, name: str) -> None:
        service = name.partition("@")[0]
        env = self.env(service)
        env[service.upper() + "_HTTP_PORT"] = str(self.port_of(name))
        if self.crash_points is not None:
            (self.crash_points / name).mkdir(parents=True, exist_ok=True)
            env["EGOV_CRASH_POINTS_DIR"] = str(self.crash_points / name)
        self.processes[name] = spawn_service(service, env, self.log_dir / f"{name}.log")

    async def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        try:
            await wait_http_ready(self.port_of(name), self.processes[name], timeout)
        except (RuntimeError, TimeoutError) as err:
            raise RuntimeError(f"{name}: {err}; see {self.log_dir}/{name}.log") from err

    async def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        process = self.processes.pop(name)
        process.send_signal(sig)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait()
        self.exit_codes.setdefault(name, []).append(process.returncode)
        return process.returncode

    async def start_ready(self, *instances: str, timeout: float = 60.0) -> None:
        """Start the instances together and wait until every one answers /ready."""
        for name in instances:
            self.start(name)
        await asyncio.gather(*(self.wait_ready(name, timeout) for name in instances))

    async def restart(self, name: str, sig: int = signal.SIGTERM) -> int:
        code = await self.stop(name, sig)
        self.start(name)
        await self.wait_ready(name)
        return code

    async def stop_all(self) -> None:
        for name in list(self.processes):
            await self.stop(name)


@contextlib.asynccontextmanager
async def running_services(
    kafka: KafkaAccess, dsns: dict[str, str], smtp_port: int, log_dir: Path, owner_dsns: dict[str, str] | None = None
) -> AsyncIterator[ServiceProcesses]:
    services = ServiceProcesses(kafka, dsns, smtp_port, log_dir, owner_dsns=owner_dsns or {})
    try:
        await services.start_ready(*SERVICE_PORTS)
        yield services
    finally:
        await services.stop_all()


def sample_application(ags: str | None = None, **project: Any) -> dict[str, Any]:
    """The demo application for a fresh municipality (so the double-funding rule stays quiet)."""
    import json
    import random

    application: dict[str, Any] = json.loads((REPO / "deploy" / "demo" / "application.json").read_text())
    application["applicant"]["ags"] = ags or f"16{random.randrange(10**6):06d}"
    application["partners"] = []
    application["project"].update(project)
    return application


DEMO_DIR = REPO / "deploy" / "demo"


# Small stand-ins for the demo's documents, for the burst tests and benchmarks: an upload each is
# part of every application now, and 150 KiB per application would weigh on the figures.
SMALL_DOCUMENTS = {
    "kostenplan-klein.pdf": b"%PDF-1.4\n% Kostenplan (Testdokument)\n%%EOF\n",
    "projektbeschreibung-klein.pdf": b"%PDF-1.4\n% Projektbeschreibung (Testdokument)\n%%EOF\n",
}
SMALL_FOR = {"kostenplan.pdf": "kostenplan-klein.pdf", "projektbeschreibung.pdf": "projektbeschreibung-klein.pdf"}


def with_small_attachments(application: dict[str, Any]) -> dict[str, Any]:
    """The application announcing the small stand-ins instead of the demo's documents."""
    import hashlib

    attachments = []
    for attachment in application.get("attachments", []):
        name = SMALL_FOR.get(str(attachment["file_name"]), str(attachment["file_name"]))
        data = SMALL_DOCUMENTS[name]
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        attachments.append({**attachment, "file_name": name, "size_bytes": len(data), "digest": digest})
    return {**application, "attachments": attachments}


def attachment_bytes(attachment: dict[str, Any]) -> bytes:
    """The bytes of a demo attachment (deploy/demo/<file_name>, or a small stand-in): they match the
    announcement."""
    name = str(attachment["file_name"])
    return SMALL_DOCUMENTS[name] if name in SMALL_DOCUMENTS else (DEMO_DIR / name).read_bytes()


async def upload_attachments(
    application_id: str, application: dict[str, Any], token: str, base_url: str | None = None
) -> list[dict[str, Any]]:
    """Upload every attachment ``application`` announces (the demo's files), as a portal does after
    its submission; returns intake's answers. Review waits for them: an application is complete
    only once every announced attachment arrived."""
    async with httpx.AsyncClient(base_url=base_url or intake_url(""), timeout=30) as http:
        return await upload_with(http, application_id, application, token)


async def upload_with(
    http: httpx.AsyncClient,
    application_id: str,
    application: dict[str, Any],
    token: str,
    base_url: str = "",
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``upload_attachments`` on a client of the caller's (a burst reuses its connections);
    ``base_url`` when the client has none, ``headers`` to send along (a trace's ``traceparent``)."""
    answers = []
    for n, attachment in enumerate(application.get("attachments", [])):
        response = await http.put(
            f"{base_url}/v1/applications/{application_id}/attachments/{n}",
            content=attachment_bytes(attachment),
            headers={**(headers or {}), "Authorization": f"Bearer {token}", "Content-Type": attachment["media_type"]},
        )
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


async def open_fiscal_year(year: int, pot_cents: int) -> int:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"http://127.0.0.1:{SERVICE_PORTS['budget']}/v1/fiscal-years",
            json={"fiscal_year": year, "pot_cents": pot_cents},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert response.status_code in (201, 409), response.text
    return response.status_code


def intake_url(path: str) -> str:
    return f"http://127.0.0.1:{SERVICE_PORTS['intake']}{path}"


class TcpProxy:
    """A loopback TCP forwarder that a test can cut: every connection through it is aborted and new
    ones are refused until ``restore``. Put between one service and PostgreSQL, it is a database
    outage for that service alone; the shared cluster and every other client are untouched."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def via(self, dsn: str) -> str:
        """``dsn`` with its host and port replaced by the proxy's."""
        head, tail = dsn.split("@", 1)
        return f"{head}@127.0.0.1:{self.port}/{tail.split('/', 1)[1]}"

    async def cut(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def restore(self) -> None:
        await self.start()

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._open.update((client_writer, server_writer))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while chunk := await reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
            except (OSError, RuntimeError):
                pass
            finally:
                writer.transport.abort()
                self._open.discard(writer)

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))


def as_intake_writes(received: Any, at: Any = None) -> list[Envelope]:
    """A hand-made ``application.received`` (an ApplicationReceived) as intake writes it, followed, if it
    announces attachments, by the ``application.completed`` their uploads would make (at ``at``,
    default the receipt time): review reviews complete applications only."""
    from schemas.events import ApplicationCompleted

    app_id = received.application_id
    envelopes = [Envelope.wrap(received, source="/egov/intake", subject=app_id)]
    if received.application.attachments:
        completed = ApplicationCompleted(
            application_id=app_id,
            completed_at=at or received.received_at,
            attachments=len(received.application.attachments),
        )
        envelopes.append(Envelope.wrap(completed, source="/egov/intake", subject=app_id))
    return envelopes


class StandInIntake:
    """Watermarks as intake writes them, for tests that write application events themselves: while
    the test appends (``appending(since)``), none passes ``since``; otherwise they trail the clock a
    little, every ``interval``, so budget's frontier moves on (and its commits with it)."""

    MARGIN = timedelta(milliseconds=500)

    def __init__(self, kafka: KafkaAccess, interval: float = 0.2) -> None:
        self.kafka, self.interval = kafka, interval
        self._holds: list[datetime] = []
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def appending(self, since: datetime) -> AsyncIterator[None]:
        self._holds.append(since)
        try:
            yield
        finally:
            self._holds.remove(since)

    def watermark(self) -> datetime:
        return min([datetime.now(UTC) - self.MARGIN, *self._holds])

    async def __aenter__(self) -> StandInIntake:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        producer = make_producer(self.kafka, "test-stand-in-intake")
        await producer.start()
        try:
            while True:
                at = self.watermark()
                for p in range(APPLICATIONS.partitions):
                    mark = IntakeWatermark(watermark=at, partition=p, instance="stand-in")
                    envelope = Envelope.wrap(mark, source="/egov/intake", subject="intake-watermark")
                    await producer.send(
                        APPLICATIONS.name,
                        envelope.to_bytes(),
                        key=b"intake-watermark",
                        partition=p,
                        headers=headers_of(envelope),
                    )
                await producer.flush()
                await asyncio.sleep(self.interval)
        finally:
            await producer.stop()
