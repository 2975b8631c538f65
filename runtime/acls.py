"""The broker's ACLs, generated from the topic registry: each topic written only by its one writer, read only
by its declared readers; each service's consumer groups its own. A stream processor (``STREAM_APPS``) also
owns the internal topics (changelogs) named after it.

    python -m runtime.acls print              the ACLs the registry asks for, one per line
    python -m runtime.acls apply [--prune]    create them on the broker (idempotent); --prune also deletes
                                              ACLs on our topics and groups that the registry does not ask for
    python -m runtime.acls principals         the principals, one per line (the local broker's SCRAM users)

Connects as ``EGOV_KAFKA_USERNAME`` (an operator principal with ALTER on the cluster), see ``ToolSettings``.
Portal principals come from ``EGOV_KAFKA_PORTAL_PRINCIPALS`` (comma-separated, default: the local ones).
The broker runs ``allow.everyone.if.no.acl.found=false``, so whatever is not listed here is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest

from runtime.kafka import KafkaAccess, make_admin
from runtime.settings import ToolSettings
from schemas.topics import ALL_TOPICS, PORTALS, SERVICES, Topic

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from aiokafka.admin import AIOKafkaAdminClient

# The operator principal (a super user on the broker: creates topics, applies these ACLs).
OPERATOR = "admin"
# Reads every topic: the audit trail is the whole log.
AUDITOR = "audit"
# A downstream system: reads the public topics only, with consumer groups named downstream-*.
DOWNSTREAM = "downstream"
# The portals the local broker knows; a deployment names its own in EGOV_KAFKA_PORTAL_PRINCIPALS.
LOCAL_PORTALS = ("portal.demo-portal", "portal.portal-a")
# Stream processors (faust apps): besides the domain topics the registry lets them read, they keep internal
# topics (table changelogs) that they create themselves, all named "<principal>-*" and nothing else.
STREAM_APPS = ("statistics",)
CLUSTER = "kafka-cluster"


class Resource(IntEnum):
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class Pattern(IntEnum):
    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ANY = 1
    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8
    IDEMPOTENT_WRITE = 12


ALLOW = 3
ANY_PERMISSION = 1


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: ``principal`` may ``operation`` on ``resource`` ``name`` (literal or a prefix)."""

    principal: str
    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = Pattern.LITERAL

    def __str__(self) -> str:
        kind = "prefix" if self.pattern is Pattern.PREFIXED else "name"
        return f"User:{self.principal} {self.operation.name} {self.resource.name} {kind}={self.name}"


def group_prefix(principal: str) -> str:
    """Every consumer group of a principal starts with its name (see ``runtime.kafka.consumer_group``)."""
    return f"{principal}-"


def internal_topic_prefix(principal: str) -> str:
    """A stream processor's internal topics start with its name, like its consumer groups."""
    return f"{principal}-"


# What a stream processor may do with its own internal topics: create them (compacted changelogs, declared by
# the app at start-up), write its table updates and read them back when it recovers. No DELETE, no ALTER.
INTERNAL_TOPIC_OPERATIONS = (Operation.CREATE, Operation.READ, Operation.WRITE)


def writers_of(topic: Topic, portals: Sequence[str]) -> tuple[str, ...]:
    return tuple(portals) if topic.writer == PORTALS else (topic.writer,)


def readers_of(topic: Topic) -> tuple[str, ...]:
    return (*topic.readers, AUDITOR, *((DOWNSTREAM,) if topic.public else ()))


def plan(topics: Iterable[Topic] = ALL_TOPICS, portals: Sequence[str] = LOCAL_PORTALS) -> list[Acl]:
    """Every ACL the registry asks for, sorted. Pure: the tests read it without a broker."""
    acls: set[Acl] = set()
    for topic in topics:
        for writer in writers_of(topic, portals):
            acls.add(Acl(writer, Resource.TOPIC, topic.name, Operation.WRITE))
            # Kafka 3+ needs only WRITE for an idempotent producer; older brokers ask IDEMPOTENT_WRITE.
            acls.add(Acl(writer, Resource.CLUSTER, CLUSTER, Operation.IDEMPOTENT_WRITE))
        for reader in readers_of(topic):
            acls.add(Acl(reader, Resource.TOPIC, topic.name, Operation.READ))
    for app in STREAM_APPS:
        for operation in INTERNAL_TOPIC_OPERATIONS:
            acls.add(Acl(app, Resource.TOPIC, internal_topic_prefix(app), operation, Pattern.PREFIXED))
    for principal in (*SERVICES, *STREAM_APPS, DOWNSTREAM):
        acls.add(Acl(principal, Resource.GROUP, group_prefix(principal), Operation.READ, Pattern.PREFIXED))
    return sorted(acls)


def principals(portals: Sequence[str] = LOCAL_PORTALS) -> list[str]:
    return [*SERVICES, *STREAM_APPS, OPERATOR, AUDITOR, DOWNSTREAM, *portals]


def configured_portals() -> tuple[str, ...]:
    raw = os.environ.get("EGOV_KAFKA_PORTAL_PRINCIPALS", "")
    named = tuple(p.strip() for p in raw.split(",") if p.strip())
    return named or LOCAL_PORTALS


def _raise_for(error_code: int, error_message: str | None, what: str) -> None:
    if error_code:
        raise for_code(error_code)(f"{what}: {error_message or ''}")


async def current(admin: AIOKafkaAdminClient) -> set[Acl]:
    """The broker's ALLOW ACLs on topics and groups, in our terms (others are left out)."""
    # None is the protocol's "any" for a name, principal or host.
    request = DescribeAclsRequest(1, None, Pattern.ANY, None, None, Operation.ANY, ANY_PERMISSION)
    response = await admin._send_request(request)
    _raise_for(response.error_code, response.error_message, "describe ACLs")
    found: set[Acl] = set()
    for resource_type, name, pattern, entries in response.resources:
        if resource_type not in Resource._value2member_map_ or pattern not in Pattern._value2member_map_:
            continue
        for principal, _host, operation, permission in entries:
            if permission == ALLOW and operation in Operation._value2member_map_ and principal.startswith("User:"):
                found.add(Acl(principal[5:], Resource(resource_type), name, Operation(operation), Pattern(pattern)))
    return found


async def create(admin: AIOKafkaAdminClient, acl: Acl) -> None:
    request = CreateAclsRequest(acl.resource, acl.name, acl.pattern, f"User:{acl.principal}", "*", acl.operation, ALLOW)
    response = await admin._send_request(request)
    for error_code, error_message in response.creation_responses:
        _raise_for(error_code, error_message, f"create {acl}")


async def delete(admin: AIOKafkaAdminClient, acl: Acl) -> None:
    request = DeleteAclsRequest(acl.resource, acl.name, acl.pattern, f"User:{acl.principal}", "*", acl.operation, ALLOW)
    response = await admin._send_request(request)
    for error_code, error_message, _matching in response.filter_responses:
        _raise_for(error_code, error_message, f"delete {acl}")


def ours(acl: Acl, topics: Iterable[Topic]) -> bool:
    """Prune touches only ACLs on the registry's topics, the stream processors' internal topics and our
    principals' groups, never another team's."""
    names = {t.name for t in topics}
    internal = acl.resource is Resource.TOPIC and acl.name.startswith(tuple(map(internal_topic_prefix, STREAM_APPS)))
    group = acl.resource is Resource.GROUP and acl.name.startswith((*SERVICES, *STREAM_APPS, DOWNSTREAM))
    return acl.name in names or internal or group


async def apply(
    kafka: KafkaAccess, wanted: list[Acl], *, prune: bool = False, topics: Iterable[Topic] = ALL_TOPICS
) -> tuple[list[Acl], list[Acl]]:
    """Create the missing ACLs (and, with ``prune``, delete the unwanted ones); returns (created, deleted)."""
    admin = make_admin(kafka, "egov-acls")
    await admin.start()
    try:
        present = await current(admin)
        missing = [acl for acl in wanted if acl not in present]
        for acl in missing:
            await create(admin, acl)
        extra = sorted(a for a in present - set(wanted) if ours(a, topics)) if prune else []
        for acl in extra:
            await delete(admin, acl)
        return missing, extra
    finally:
        await admin.close()


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m runtime.acls",
        description=__doc__.split("\n")[0],
        epilog="Exit codes: 0 done, 1 failed (broker unreachable or refused), 2 usage.",
    )
    commands = cli.add_subparsers(dest="command", required=True)
    commands.add_parser("print", help="print the ACLs the registry asks for")
    applying = commands.add_parser("apply", help="create them on the broker")
    applying.add_argument("--prune", action="store_true", help="also delete ACLs on our resources not asked for")
    applying.add_argument("--quiet", action="store_true", help="print only the summary")
    commands.add_parser("principals", help="print every principal, one per line")
    return cli


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    portals = configured_portals()
    wanted = plan(ALL_TOPICS, portals)
    if args.command == "principals":
        print("\n".join(principals(portals)))
    elif args.command == "print":
        print("\n".join(map(str, wanted)))
    else:
        created, deleted = asyncio.run(apply(ToolSettings().kafka, wanted, prune=args.prune))
        if not args.quiet:
            for acl in created:
                print(f"created {acl}")
            for acl in deleted:
                print(f"deleted {acl}")
        print(f"acls: {len(wanted)} wanted, {len(created)} created, {len(deleted)} deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
