"""The ACL plan from the registry, and the Kafka settings production refuses; no broker needed."""

from __future__ import annotations

import ssl

import pytest
from pydantic import SecretStr, ValidationError

from runtime.acls import AUDITOR, DOWNSTREAM, LOCAL_PORTALS, Acl, Operation, Pattern, Resource, plan, principals
from runtime.kafka import KafkaAccess, Replication, consumer_group
from runtime.settings import ToolSettings
from schemas.topics import (
    ALL_TOPICS,
    APPLICATIONS,
    BUDGET,
    BUDGET_ADMIN,
    DECISIONS,
    DOMAIN_TOPICS,
    NOTIFICATIONS,
    REVIEWS,
    SERVICES,
    SUBMISSIONS,
)
from services.intake.topology import STATUS_TOPICS

pytestmark = pytest.mark.unit

ACLS = plan(ALL_TOPICS, LOCAL_PORTALS)
# What each service's consumers subscribe to (the composition roots say the same).
CONSUMES = {
    "intake": {SUBMISSIONS.name, BUDGET_ADMIN.name, *(t.name for t in STATUS_TOPICS)},
    "review": {APPLICATIONS.name},
    "budget": {REVIEWS.name, APPLICATIONS.name},
    "notify": {APPLICATIONS.name, REVIEWS.name, BUDGET.name, DECISIONS.name},
}


def topics_where(principal: str, operation: Operation) -> set[str]:
    return {
        a.name for a in ACLS if a.principal == principal and a.operation is operation and a.resource is Resource.TOPIC
    }


def test_every_topic_has_exactly_its_writer() -> None:
    for topic in ALL_TOPICS:
        writers = {a.principal for a in ACLS if a.name == topic.name and a.operation is Operation.WRITE}
        expected = set(LOCAL_PORTALS) if topic is SUBMISSIONS else {topic.writer}
        assert writers == expected, topic.name


def test_portals_write_only_submissions_and_read_nothing() -> None:
    for portal in LOCAL_PORTALS:
        assert topics_where(portal, Operation.WRITE) == {SUBMISSIONS.name}
        assert topics_where(portal, Operation.READ) == set()
        assert not [a for a in ACLS if a.principal == portal and a.resource is Resource.GROUP]


def test_services_read_what_they_consume_and_nothing_more() -> None:
    for service in SERVICES:
        assert topics_where(service, Operation.READ) == CONSUMES[service], service


def test_auditors_read_every_domain_topic_and_write_none() -> None:
    assert topics_where(AUDITOR, Operation.READ) >= {t.name for t in DOMAIN_TOPICS}
    assert topics_where(AUDITOR, Operation.WRITE) == set()


def test_downstream_reads_the_public_topics_only() -> None:
    assert topics_where(DOWNSTREAM, Operation.READ) == {t.name for t in ALL_TOPICS if t.public} == {DECISIONS.name}
    assert topics_where(DOWNSTREAM, Operation.WRITE) == set()


def test_each_service_uses_only_groups_named_after_it() -> None:
    for service in SERVICES:
        group = Acl(service, Resource.GROUP, f"{service}-", Operation.READ, Pattern.PREFIXED)
        assert group in ACLS
        assert consumer_group(service, "test-", "line").startswith(group.name)
    assert NOTIFICATIONS.name in topics_where("intake", Operation.READ)


def test_statistics_reads_its_sources_and_owns_only_its_prefixed_internal_topics() -> None:
    mine = {a for a in ACLS if a.principal == "statistics"}
    reads = {a.name for a in mine if a.operation is Operation.READ and a.pattern is Pattern.LITERAL}
    assert reads == {APPLICATIONS.name, BUDGET.name, DECISIONS.name}
    assert {a for a in mine if a.pattern is Pattern.PREFIXED} == {
        Acl("statistics", Resource.TOPIC, "statistics-", Operation.CREATE, Pattern.PREFIXED),
        Acl("statistics", Resource.TOPIC, "statistics-", Operation.READ, Pattern.PREFIXED),
        Acl("statistics", Resource.TOPIC, "statistics-", Operation.WRITE, Pattern.PREFIXED),
        Acl("statistics", Resource.GROUP, "statistics-", Operation.READ, Pattern.PREFIXED),
    }
    assert not [a for a in mine if a.operation is Operation.WRITE and a.pattern is Pattern.LITERAL]


def test_every_principal_is_known_to_the_local_broker() -> None:
    assert set(principals(LOCAL_PORTALS)) >= {a.principal for a in ACLS}


def secured(**overrides: object) -> ToolSettings:
    values: dict[str, object] = {
        "environment": "production",
        "kafka_bootstrap": "kafka-0.example.internal:9093",
        "kafka_username": "intake",
        "kafka_password": SecretStr("a-long-random-secret"),
    }
    return ToolSettings(**(values | overrides))  # type: ignore[arg-type]


def test_production_accepts_sasl_over_verified_tls() -> None:
    settings = secured()
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert (settings.replication.factor, settings.replication.min_insync) == (3, 2)


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"kafka_security_protocol": "PLAINTEXT"}, "not encrypted"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "not encrypted"),
        ({"kafka_tls_verify": False}, "verifies the broker"),
        ({"kafka_username": ""}, "required"),
        ({"kafka_password": SecretStr("")}, "required"),
        ({"kafka_password": SecretStr("intake-dev-only")}, "placeholder"),
    ],
)
def test_production_refuses_open_or_unverified_kafka(overrides: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        secured(**overrides)


def test_development_may_relax_transport_but_names_a_principal() -> None:
    relaxed = ToolSettings(environment="development", kafka_security_protocol="PLAINTEXT")
    assert (relaxed.replication.factor, relaxed.replication.min_insync) == (1, 1)
    with pytest.raises(ValueError, match="EGOV_KAFKA_USERNAME"):
        _ = ToolSettings(environment="development").kafka


def test_replication_is_a_setting() -> None:
    settings = secured(kafka_replication_factor=5, kafka_min_insync_replicas=3)
    assert settings.replication == Replication(5, 3)
    with pytest.raises(ValueError, match=r"min\.insync\.replicas"):
        Replication(1, 2)


def test_the_tls_context_checks_the_broker_certificate() -> None:
    options = KafkaAccess("127.0.0.1:1", "intake", SecretStr("s")).client_options()
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["security_protocol"] == "SASL_SSL"
