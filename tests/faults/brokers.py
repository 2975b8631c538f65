"""The fault run's Kafka: one broker, or a three-node KRaft cluster (``deploy/kafka.sh`` with
``EGOV_KAFKA_NODES=3``), and the broker faults the driver does to it.

On the cluster a fault picks its victim at the moment it strikes: the leader of the partition that is
busiest just then (from the metadata), or the active KRaft controller (from the metadata quorum
description, as ``kafka-metadata-quorum.sh describe --status`` shows it). Broker faults take turns: the
next one waits until the node hit before is back and every partition has all its replicas in sync
again, so each fault meets the cluster whole. A cluster of three is built to survive one node down; two
down at once is an outage by design (no quorum, fewer in-sync replicas than ``min.insync.replicas``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields

from runtime.kafka import KafkaAccess, Replication, make_admin, make_reader
from schemas.topics import ALL_TOPICS
from tests.faults.plan import FaultKind
from tests.support import REPO, kafka_access

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aiokafka.admin import AIOKafkaAdminClient

METADATA_TOPIC = "__cluster_metadata"  # the KRaft quorum's own log: its leader is the active controller
REPLICATED_PATIENCE_SECONDS = 120.0
BUSY_SAMPLE_SECONDS = 1.0


class Brokers:
    """The slot's broker or cluster: start, stop, where it is, and what a fault does to which node."""

    def __init__(self, state: Path, port: int, nodes: int = 1) -> None:
        if nodes not in (1, 3):
            raise ValueError(f"{nodes} nodes: a single broker or a cluster of three")
        self.state, self.port, self.nodes = state, port, nodes
        self._turn = asyncio.Lock()  # one broker fault at a time, each until the cluster is whole again

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + 2 * i}" for i in range(self.nodes))

    @property
    def replication(self) -> Replication:
        return Replication(3, 2) if self.nodes == 3 else Replication()

    @property
    def operator(self) -> KafkaAccess:
        return kafka_access(self.bootstrap)

    def kafka_sh(self, command: str) -> None:
        env = {
            **os.environ,
            "EGOV_STATE_DIR": str(self.state),
            "EGOV_KAFKA_PORT": str(self.port),
            "EGOV_KAFKA_NODES": str(self.nodes),
        }
        done = subprocess.run([str(REPO / "deploy" / "kafka.sh"), command], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh {command}: {done.stderr}")

    def node_dir(self, node: int) -> Path:
        return self.state / "kafka" if self.nodes == 1 else self.state / "kafka" / f"node{node}"

    def pid(self, node: int) -> int:
        return int((self.node_dir(node) / "kafka.pid").read_text().split()[0])

    # --- the whole of it -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Freshly formatted: no topic, no offset of an earlier run."""
        await asyncio.to_thread(self.kafka_sh, "reset")
        await asyncio.to_thread(self.kafka_sh, "start")

    async def stop(self) -> None:
        for node in range(1, self.nodes + 1):  # a paused node would not hear its SIGTERM
            self.signal(node, signal.SIGCONT)
        await asyncio.to_thread(self.kafka_sh, "stop")

    # --- one node ------------------------------------------------------------------------------------

    def signal(self, node: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            os.kill(self.pid(node), sig)

    def kill(self, node: int) -> None:
        self.signal(node, signal.SIGKILL)

    def pause(self, node: int) -> None:
        self.signal(node, signal.SIGSTOP)

    def resume(self, node: int) -> None:
        self.signal(node, signal.SIGCONT)

    async def restart(self) -> None:
        """Start the nodes that are down (kafka.sh start leaves running ones alone) and wait for all."""
        await asyncio.to_thread(self.kafka_sh, "start")

    # --- what the metadata says ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def admin(self) -> AsyncIterator[AIOKafkaAdminClient]:
        admin = make_admin(self.operator, "faults-brokers")
        await admin.start()
        try:
            yield admin
        finally:
            await admin.close()

    async def busiest_partition(self) -> TopicPartition:
        """The registry partition that grew most over a second just now (at a quiet moment, the longest)."""
        reader = make_reader(self.operator, "faults-busiest")
        await reader.start()
        try:
            await reader._client.force_metadata_update()
            partitions = [
                TopicPartition(t.name, p) for t in ALL_TOPICS for p in reader.partitions_for_topic(t.name) or ()
            ]
            before = await reader.end_offsets(partitions)
            await asyncio.sleep(BUSY_SAMPLE_SECONDS)
            after = await reader.end_offsets(partitions)
        finally:
            await reader.stop()
        return max(partitions, key=lambda tp: (after[tp] - before[tp], after[tp], tp.topic, tp.partition))

    async def leader(self, partition: TopicPartition) -> int:
        async with self.admin() as admin:
            for topic in await admin.describe_topics([partition.topic]):
                for described in topic["partitions"]:
                    if described["partition"] == partition.partition and described["leader"] >= 0:
                        return int(described["leader"])
        raise RuntimeError(f"{partition.topic}/{partition.partition} has no leader just now")

    async def controller(self) -> int:
        """The active KRaft controller: the leader of the metadata quorum."""
        async with self.admin() as admin:
            response = await admin._send_request(DescribeQuorumRequest())
        described = response.to_object()
        partition = described["topics"][0]["partitions"][0]
        if described["error_code"] or partition["error_code"] or partition["leader_id"] < 0:
            raise RuntimeError(f"the metadata quorum has no leader just now: {described}")
        return int(partition["leader_id"])

    async def under_replicated(self) -> list[str]:
        """Partitions (internal ones included) with a replica out of sync or no leader."""
        async with self.admin() as admin:
            topics = await admin.describe_topics()
        return [
            f"{t['topic']}/{p['partition']}"
            for t in topics
            for p in t["partitions"]
            if p["leader"] < 0 or set(p["isr"]) != set(p["replicas"])
        ]

    async def replication_problems(self) -> list[str]:
        """Every topic, internal ones included (group offsets, transaction state once used), holds the
        cluster's replication factor and min.insync.replicas: none was made with a single copy."""
        wanted = self.replication
        async with self.admin() as admin:
            topics = await admin.describe_topics()
            names = [t["topic"] for t in topics]
            configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        problems = [
            f"{t['topic']}/{p['partition']} has {len(p['replicas'])} replicas, not {wanted.factor}"
            for t in topics
            for p in t["partitions"]
            if len(p["replicas"]) != wanted.factor
        ]
        for response in configs:
            for resource in response.to_object()["resources"]:
                min_isr = {c["config_names"]: c["config_value"] for c in resource["config_entries"]}.get(
                    "min.insync.replicas"
                )
                if min_isr != str(wanted.min_insync):
                    problems.append(f"{resource['resource_name']} has min.insync.replicas {min_isr}")
        return problems

    async def whole_again(self, since: float) -> str:
        """Wait until every partition has all its replicas in sync; say how long it took."""
        deadline = time.monotonic() + REPLICATED_PATIENCE_SECONDS
        lagging: list[str] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # a node may still be joining: ask again
                lagging = await self.under_replicated()
                if not lagging:
                    return f"in sync after {time.monotonic() - since:.1f}s"
            await asyncio.sleep(1)
        return f"NOT in sync after {REPLICATED_PATIENCE_SECONDS:.0f}s: {lagging[:5]}"

    # --- a fault -------------------------------------------------------------------------------------

    async def victim(self, kind: FaultKind) -> tuple[int, str]:
        if kind is FaultKind.KILL_CONTROLLER:
            return await self.controller(), "the active controller"
        if kind in (FaultKind.KILL_LEADER, FaultKind.PAUSE_LEADER):
            busiest = await self.busiest_partition()
            return await self.leader(busiest), f"leader of {busiest.topic}/{busiest.partition}"
        return 1, "the broker" if self.nodes == 1 else "node 1"

    async def inject(self, kind: FaultKind, seconds: float) -> str:
        """Do ``kind`` to the node it names for ``seconds``; what was hit, and how long until it was back."""
        asked = time.monotonic()
        async with self._turn:
            turn = time.monotonic()
            node, role = await self.victim(kind)
            struck = time.monotonic()
            waited = f"struck {turn - asked:.0f}s late (the previous broker fault's turn), " if turn - asked > 5 else ""
            killed = kind in (FaultKind.KILL, FaultKind.KILL_LEADER, FaultKind.KILL_CONTROLLER)
            if killed:
                self.kill(node)
            else:
                self.pause(node)
            await asyncio.sleep(seconds)
            if killed:
                await self.restart()
            else:
                self.resume(node)
            back = f"{waited}node {node} ({role}) back after {time.monotonic() - struck:.1f}s"
            if self.nodes == 1:
                return back
            return f"{back}, {await self.whole_again(struck)}"


# --- DescribeQuorum (API key 55): aiokafka has no request for it --------------------------------------


def _replica_state() -> CompactArray:
    return CompactArray(("replica_id", Int32), ("log_end_offset", Int64), ("tags", TaggedFields))


class DescribeQuorumResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 55
    API_VERSION = 0
    SCHEMA = Schema(
        ("error_code", Int16),
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("error_code", Int16),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("high_watermark", Int64),
                        ("current_voters", _replica_state()),
                        ("observers", _replica_state()),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 55
    API_VERSION = 0
    RESPONSE_TYPE = DescribeQuorumResponse_v0
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                ("partitions", CompactArray(("partition_index", Int32), ("tags", TaggedFields))),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest(Request[DescribeQuorumRequest_v0]):  # type: ignore[misc]
    """The metadata quorum's state; a broker forwards it to the controllers."""

    API_KEY = 55

    def build(self, request_struct_class: type[Any]) -> Any:
        return request_struct_class([(METADATA_TOPIC, [(0, {})], {})], {})
