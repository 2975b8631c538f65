"""The deployment artefacts are valid and agree with each other, checked offline.

- Prometheus configs and alert rules with ``promtool`` (Debian's prometheus package, which
  deploy/bootstrap.sh installs); a missing promtool fails, it is not skipped.
- deploy/compose.yaml against the Compose Specification JSON schema vendored in ``check-jsonschema``.
- every manifest in deploy/k8s against the Kubernetes JSON schemas vendored in ``kubernetes-validate``
  (strict: unknown keys are errors).
- the Grafana dashboard's queries are valid PromQL over metrics the services export.

Run: ``.venv/bin/pytest tests/ops -q``
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as k8s
from pydantic import ValidationError

from runtime.settings import ServiceSettings
from services.budget.settings import BudgetSettings
from services.intake.settings import IntakeSettings
from services.notify.settings import NotifySettings
from services.review.settings import ReviewSettings

pytestmark = pytest.mark.ops

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIGS = [DEPLOY / "prometheus" / "prometheus.yml", DEPLOY / "compose" / "prometheus.yml"]
COMPOSE = DEPLOY / "compose.yaml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "egov-pipeline.json"
K8S = DEPLOY / "k8s"
K8S_MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
# The oldest Kubernetes minor we claim to support, and the newest the vendored schemas know.
K8S_VERSIONS = ("1.29.0", k8s.latest_version())

SERVICES = {"intake": 8001, "review": 8002, "budget": 8003, "notify": 8004}
LOCAL_APPS = {"statistics": 8005}
SETTINGS: dict[str, type[ServiceSettings]] = {
    "intake": IntakeSettings,
    "review": ReviewSettings,
    "budget": BudgetSettings,
    "notify": NotifySettings,
}
REQUIRED_ALERTS = {
    "ServiceDown",
    "ConsumerLagGrowing",
    "DeadLettersAppearing",
    "BudgetNearlyExhausted",
    "WaitlistGrowing",
    "NoticesFailing",
    "DecisionLatencyOverObjective",
    "OutboxBacklog",
}
# Every metric the services export (runtime/metrics.py and the services' domain metrics).
COUNTERS_AND_GAUGES = {
    "egov_events_consumed_total",
    "egov_events_produced_total",
    "egov_handler_errors_total",
    "egov_dead_letters_total",
    "egov_dead_letters_lost_total",
    "egov_outbox_pending",
    "egov_consumer_lag",
    "egov_http_requests_total",
    "egov_applications_received_total",
    "egov_reviews_total",
    "egov_decisions_total",
    "egov_budget_pot_cents",
    "egov_budget_available_cents",
    "egov_budget_reserved_cents",
    "egov_budget_committed_cents",
    "egov_waitlist_length",
    "egov_waitlist_oldest_age_seconds",
    "egov_notices_total",
}
HISTOGRAMS = {"egov_handler_seconds", "egov_http_request_seconds", "egov_decision_latency_seconds"}
KNOWN_METRICS = COUNTERS_AND_GAUGES | {f"{h}_{suffix}" for h in HISTOGRAMS for suffix in ("bucket", "sum", "count")}
METRIC_NAME = re.compile(r"\begov_[a-z0-9_]+")


# --- helpers ---------------------------------------------------------------------------------------


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: install Debian's prometheus package (deploy/bootstrap.sh does)")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in K8S_MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                yield f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc


def k8s_errors(doc: dict[str, Any]) -> list[str]:
    """Schema errors of one manifest for every supported Kubernetes version (empty when valid)."""
    errors = []
    for version in K8S_VERSIONS:
        try:
            k8s.validate(doc, version, strict=True)
        except k8s.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            errors.append(f"{version}: {path}: {err.message}")
        except k8s.SchemaNotFoundError as err:
            errors.append(f"{version}: {err.message}")
    return errors


def deployments() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == "Deployment"}


def only(docs: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(docs) == 1, docs
    return docs[0]


@cache
def compose_validator() -> jsonschema.protocols.Validator:
    # check-jsonschema vendors the Compose Specification schema (from compose-spec/compose-spec via SchemaStore).
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def compose_errors(doc: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in sorted(compose_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def interpolate(value: object) -> str:
    """Compose's ``${VAR:-default}`` with nothing set in the environment: the default."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", str(value))


def load_settings(monkeypatch: pytest.MonkeyPatch, service: str, env: dict[str, str]) -> ServiceSettings:
    """The service's settings class reading exactly ``env``, as the process in the container would."""
    prefix = f"{service.upper()}_"
    unknown = {key for key in env if key.removeprefix(prefix).lower() not in SETTINGS[service].model_fields}
    # extra="ignore" would let a misspelled variable pass silently: every variable must name a setting.
    assert not unknown, f"{service}: no such settings {unknown}"
    for key in list(os.environ):
        if key.startswith(prefix):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return SETTINGS[service]()


def k8s_env(container: dict[str, Any], *, real_secrets: bool = False) -> dict[str, str]:
    """A container's environment resolved from the manifests' ConfigMap and Secret.

    ``real_secrets`` stands in for an operator who replaced the Secret's placeholders.
    """
    docs = [doc for _, doc in k8s_documents()]
    configmap = only([d for d in docs if d["kind"] == "ConfigMap"])["data"]
    secret = only([d for d in docs if d["kind"] == "Secret"])["stringData"]
    env = {}
    for item in container["env"]:
        source = item.get("valueFrom", {})
        if "configMapKeyRef" in source:
            env[item["name"]] = configmap[source["configMapKeyRef"]["key"]]
        elif "secretKeyRef" in source:
            value = secret[source["secretKeyRef"]["key"]]
            env[item["name"]] = value.replace("changeme-placeholder", "s3cr3t") if real_secrets else value
        else:
            env[item["name"]] = item["value"]
    return env


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard_panels() -> list[dict[str, Any]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    return list(walk(json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]))


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


# --- Prometheus --------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_prometheus_config_is_valid(config: Path) -> None:
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout, "the config must load the alert rules"


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", ALERTS_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_catches_a_broken_rule(tmp_path: Path) -> None:
    # The unit tests are not vacuous: a rule that fires on healthy targets fails them.
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text(encoding="utf-8").replace("expr: up == 0", "expr: up == 1"))
    (tmp_path / "alerts_test.yml").write_text(ALERTS_TEST.read_text(encoding="utf-8"))
    result = promtool("test", "rules", tmp_path / "alerts_test.yml")
    assert result.returncode != 0
    assert "ServiceDown" in result.stdout + result.stderr


METRIC_MODULES = [
    "runtime.metrics",
    *(f"services.{name}.metrics" for name in ("intake", "review", "budget", "notify", "statistics")),
]
EXPOSE = (
    "import importlib, sys\n"
    "for module in sys.argv[1:]: importlib.import_module(module)\n"
    "from prometheus_client import generate_latest\n"
    "sys.stdout.write(generate_latest().decode())\n"
)


def test_every_declared_metric_passes_promtool_check_metrics() -> None:
    """Every metric of every service as one exposition, linted by Prometheus' own tool (the running
    services' expositions are checked in tests/e2e/test_operations.py)."""
    exposed = subprocess.run(
        [sys.executable, "-c", EXPOSE, *METRIC_MODULES], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "egov_budget_late_arrivals_total" in exposed
    assert "egov_statistics_" in exposed
    exe = shutil.which("promtool")
    assert exe, "promtool not found: install Debian's prometheus package (deploy/bootstrap.sh does)"
    checked = subprocess.run(
        [exe, "check", "metrics"], input=exposed, capture_output=True, text=True, timeout=60, check=False
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_required_alerts_exist_with_severity_and_annotations() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    assert set(names) >= REQUIRED_ALERTS
    for rule in rules:
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, rule["alert"]
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), rule["alert"]
        assert annotations.get("description"), rule["alert"]


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases: dict[str, set[bool]] = {}
    for test in load_yaml(ALERTS_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for name in (rule["alert"] for rule in alert_rules()):
        assert name in cases, f"{name} has no test in alerts_test.yml"
        assert cases[name] == {True, False}, f"{name} needs a firing and a not-firing case"
    assert ALERTS.name in load_yaml(ALERTS_TEST)["rule_files"]


def test_alerts_use_only_exported_metrics() -> None:
    used = {m for rule in alert_rules() for m in METRIC_NAME.findall(rule["expr"])}
    assert used <= KNOWN_METRICS, used - KNOWN_METRICS


def test_both_prometheus_configs_scrape_the_four_services_with_a_service_label() -> None:
    for config in PROMETHEUS_CONFIGS:
        jobs = {job["job_name"]: job for job in load_yaml(config)["scrape_configs"]}
        # The local run also starts the statistics app (deploy/stack.sh); compose does not carry it yet.
        expected = SERVICES | (LOCAL_APPS if config == PROMETHEUS_CONFIGS[0] else {})
        assert set(jobs) == set(expected), config
        for name, job in jobs.items():
            text = json.dumps(job)
            assert f'"service": "{name}"' in text or f'"replacement": "{name}"' in text, (config, name)
            assert str(expected[name]) in text, (config, name)


# --- Grafana -----------------------------------------------------------------------------------------


def test_dashboard_parses_and_every_query_uses_egov_metrics_or_up() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"]
    assert dashboard["title"]
    panels = [p for p in dashboard_panels() if p["type"] != "row"]
    assert panels
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            expr = target["expr"]
            metrics = set(METRIC_NAME.findall(expr))
            assert metrics or re.search(r"\bup\b", expr), f"{panel['title']!r}: {expr}"
            assert metrics <= KNOWN_METRICS, f"{panel['title']!r}: unknown {metrics - KNOWN_METRICS}"


def test_dashboard_covers_the_pipeline_money_notices_and_latency() -> None:
    used = {m for expr in dashboard_exprs() for m in METRIC_NAME.findall(expr)}
    expected = {
        "egov_events_consumed_total",
        "egov_events_produced_total",
        "egov_consumer_lag",
        "egov_dead_letters_total",
        "egov_http_requests_total",
        "egov_http_request_seconds_bucket",
        "egov_budget_pot_cents",
        "egov_budget_available_cents",
        "egov_budget_reserved_cents",
        "egov_budget_committed_cents",
        "egov_waitlist_length",
        "egov_waitlist_oldest_age_seconds",
        "egov_notices_total",
        "egov_decision_latency_seconds_bucket",
    }
    assert expected <= used, expected - used


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses every query as a recording rule; Grafana's interval variables become durations.
    def concrete(expr: str) -> str:
        return expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")

    rules = [{"record": f"dashboard:query_{i}", "expr": concrete(e)} for i, e in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_matches_dashboard_and_compose() -> None:
    datasources = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    prometheus = only([d for d in datasources if d["type"] == "prometheus"])
    assert prometheus["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variable = only([v for v in dashboard["templating"]["list"] if v["type"] == "datasource"])
    assert variable["current"]["value"] == prometheus["uid"]
    for panel in dashboard_panels():
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${" + variable["name"] + "}", panel["title"]

    provider = only(load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "egov.yml")["providers"])
    grafana_volumes = load_yaml(COMPOSE)["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in grafana_volumes
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana_volumes


# --- Docker Compose ------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    assert compose_errors(load_yaml(COMPOSE)) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            lambda d: d["services"]["intake"].__setitem__("healtcheck", {"test": ["NONE"]}),
            "healtcheck",
            id="misspelled-service-key",
        ),
        pytest.param(lambda d: d["services"]["kafka"].__setitem__("restart", ["always"]), "restart", id="wrong-type"),
        pytest.param(
            lambda d: d["services"]["notify"]["depends_on"]["mailpit"].__setitem__("condition", "service_done"),
            "service_done",
            id="unknown-depends-on-condition",
        ),
        pytest.param(lambda d: d.__setitem__("volume", {}), "volume", id="misspelled-top-level-key"),
    ],
)
def test_compose_schema_rejects_a_typo(mutate: Any, expected: str) -> None:
    doc = copy.deepcopy(load_yaml(COMPOSE))
    mutate(doc)
    errors = compose_errors(doc)
    assert errors, "the mutated compose file must not validate"
    assert any(expected in e for e in errors), errors


def test_compose_schema_rejects_a_misspelled_key_in_a_copy_of_the_file(tmp_path: Path) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assert "    healthcheck:\n" in text
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace("    healthcheck:\n", "    healthchek:\n", 1))
    errors = compose_errors(load_yaml(broken))
    assert any("'healthchek'" in e for e in errors), errors


def test_compose_runs_the_four_services_from_one_image_with_ready_checks() -> None:
    services = load_yaml(COMPOSE)["services"]
    images = set()
    for name, port in SERVICES.items():
        service = services[name]
        images.add(service["image"])
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert f"http://127.0.0.1:{port}/ready" in " ".join(service["healthcheck"]["test"])
        env = service["environment"]
        prefix = f"{name.upper()}_"
        assert all(key.startswith(prefix) for key in env), f"{name}: every setting has the {prefix} prefix"
        assert env[f"{prefix}HTTP_HOST"] == "0.0.0.0"  # noqa: S104 - inside the container network
        assert int(env[f"{prefix}HTTP_PORT"]) == port
        assert env[f"{prefix}KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env[f"{prefix}KAFKA_USERNAME"] == name, "each service is its own Kafka principal"
        assert env[f"{prefix}KAFKA_CA_FILE"] == "/etc/egov/tls/ca.pem"
        assert env[f"{prefix}DATABASE_URL"].endswith(f"@postgres:5432/egov_{name}")
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert images == {services["topics"]["image"]}, "one image for every service and the topics job"
    assert services["topics"]["command"] == ["python", "-m", "runtime.topics", "--bootstrap", "kafka:9092"]
    assert "python -m runtime.acls apply" in " ".join(services["topics"]["entrypoint"])


def test_compose_kafka_is_single_node_kraft_without_auto_topic_creation() -> None:
    """Compose runs the local broker's own template: single-node KRaft, secured, no implicit topics."""
    kafka = load_yaml(COMPOSE)["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "./kafka/server.properties:/etc/egov/kafka/server.properties.template:ro" in kafka["volumes"]
    assert kafka["entrypoint"][-1] == "/etc/egov/compose/kafka-start.sh"
    assert "ports" not in kafka, "no listener is published to the host"
    properties = dict(
        line.split("=", 1)
        for line in (DEPLOY / "kafka" / "server.properties").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    assert properties["process.roles"] == "broker,controller"
    assert properties["auto.create.topics.enable"] == "false"
    for key in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic"):
        assert int(properties[f"{key}.replication.factor"]) == 1
    assert properties["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
    assert properties["advertised.listeners"].startswith("SASL_SSL://")
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    principals = kafka["environment"]["EGOV_KAFKA_PRINCIPALS"].split()
    assert {"intake", "review", "budget", "notify", "admin"} <= set(principals)


def test_compose_bind_mounts_exist_and_postgres_creates_the_four_databases() -> None:
    services = load_yaml(COMPOSE)["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} does not exist"
    init_sql = (DEPLOY / "compose" / "postgres-init.sql").read_text(encoding="utf-8")
    for name in SERVICES:
        assert re.search(rf"CREATE DATABASE egov_{name}\b", init_sql), name


def test_compose_postgres_gives_each_service_an_owner_and_a_login_for_its_database_only() -> None:
    init_sql = (DEPLOY / "compose" / "postgres-init.sql").read_text(encoding="utf-8")
    local = (DEPLOY / "postgres.sh").read_text(encoding="utf-8")
    services = load_yaml(COMPOSE)["services"]
    for name in SERVICES:
        db, owner = f"egov_{name}", f"egov_{name}_owner"
        for role in (owner, db):
            assert re.search(rf"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE\b", init_sql), role
        assert f"CREATE DATABASE {db} OWNER {owner};" in init_sql
        assert f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;" in init_sql
        assert f"GRANT CONNECT ON DATABASE {db} TO {db};" in init_sql
        env = services[name]["environment"]
        prefix = name.upper() + "_"
        assert env[f"{prefix}DATABASE_URL"].startswith(f"postgresql://{db}:")
        assert env[f"{prefix}DATABASE_OWNER_URL"].startswith(f"postgresql://{owner}:")
        assert env[f"{prefix}DATABASE_OWNER_URL"].endswith(f"@postgres:5432/{db}")
    # The local stack makes the same shape.
    for fragment in (
        'owner="egov_${s}_owner" runtime="egov_$s"',
        "CREATE DATABASE $db OWNER $owner",
        "REVOKE ALL ON DATABASE $db FROM PUBLIC",
        "GRANT CONNECT ON DATABASE $db TO $runtime",
    ):
        assert fragment in local, fragment


def test_compose_secrets_are_marked_placeholders() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for line in text.splitlines():
        if re.search(r"(PASSWORD|TOKENS?|DATABASE_(OWNER_)?URL):", line) and not line.lstrip().startswith("#"):
            assert "# PLACEHOLDER" in line, line


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_compose_environment_is_accepted_by_the_service_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = load_yaml(COMPOSE)["services"][service]["environment"]
    settings = load_settings(monkeypatch, service, {k: interpolate(v) for k, v in environment.items()})
    assert settings.environment == "development"
    assert settings.http_port == SERVICES[service]
    assert settings.dsn.endswith(f"@postgres:5432/egov_{service}")


# --- Dockerfile ----------------------------------------------------------------------------------------


def test_dockerfile_builds_one_non_root_image() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert froms
    assert all(image == "python:3.11-slim" for image in froms), froms
    assert re.search(r"pip install \.$", text, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert re.search(r"^CMD \[.*usage", text, re.MULTILINE), "the default command prints the usage"
    # What `pip install .` needs is copied: the packages setuptools finds, and the readme pyproject names.
    for needed in ("pyproject.toml", "README.md", "schemas", "runtime", "services"):
        assert re.search(rf"^COPY .*\b{re.escape(needed)}\b", text, re.MULTILINE), needed


# --- Kubernetes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "doc"), list(k8s_documents()), ids=[n for n, _ in k8s_documents()])
def test_k8s_manifest_matches_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    assert k8s_errors(doc) == [], name
    assert doc["metadata"].get("namespace", "egov") == "egov", name


def test_k8s_has_namespace_configmap_secret_job_and_a_deployment_and_service_per_service() -> None:
    kinds: dict[str, set[str]] = {}
    for _, doc in k8s_documents():
        kinds.setdefault(doc["kind"], set()).add(doc["metadata"]["name"])
    assert kinds["Namespace"] == {"egov"}
    assert len(kinds["ConfigMap"]) == 1
    assert len(kinds["Secret"]) == 1
    assert len(kinds["Job"]) == 1
    assert kinds["Deployment"] == set(SERVICES)
    assert kinds["Service"] == set(SERVICES)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_k8s_deployment_has_probes_resources_and_runs_non_root(service: str) -> None:
    deployment = deployments()[service]
    assert deployment["spec"]["replicas"] >= 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = only(pod["containers"])
    assert container["command"] == ["python", "-m", f"services.{service}"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": SERVICES[service]}
    env = {e["name"] for e in container["env"]}
    prefix = f"{service.upper()}_"
    assert all(name.startswith(prefix) for name in env), f"{service}: every setting has the {prefix} prefix"
    assert {f"{prefix}{s}" for s in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "HTTP_HOST", "HTTP_PORT", "ENVIRONMENT")} <= env


def test_k8s_services_select_their_deployments() -> None:
    docs = [doc for _, doc in k8s_documents()]
    for service in (d for d in docs if d["kind"] == "Service"):
        deployment = deployments()[service["metadata"]["name"]]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_env_references_existing_configmap_and_secret_keys() -> None:
    docs = [doc for _, doc in k8s_documents()]
    configmap = only([d for d in docs if d["kind"] == "ConfigMap"])
    secret = only([d for d in docs if d["kind"] == "Secret"])
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for doc in docs:
        if doc["kind"] not in {"Deployment", "Job"}:
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    assert ref["name"] == configmap["metadata"]["name"], env
                    assert ref["key"] in configmap["data"], env
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    assert ref["name"] == secret["metadata"]["name"], env
                    assert ref["key"] in secret_keys, env


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_k8s_services_use_verified_tls_and_separate_owner_and_login(service: str) -> None:
    container = only(deployments()[service]["spec"]["template"]["spec"]["containers"])
    env = k8s_env(container)
    prefix = service.upper() + "_"
    assert env[f"{prefix}DATABASE_SSLMODE"] == "verify-full"
    assert env[f"{prefix}DATABASE_URL"].startswith(f"postgresql://egov_{service}:")
    assert env[f"{prefix}DATABASE_OWNER_URL"].startswith(f"postgresql://egov_{service}_owner:")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env[f"{prefix}DATABASE_SSL_ROOT_CERT"].startswith(mounts["postgres-ca"] + "/")


def test_k8s_secret_holds_only_placeholders() -> None:
    secret = only([doc for _, doc in k8s_documents() if doc["kind"] == "Secret"])
    for key, value in secret["stringData"].items():
        assert "changeme" in value or "placeholder" in value, key


def test_k8s_topics_job_runs_the_topic_creation() -> None:
    job = only([doc for _, doc in k8s_documents() if doc["kind"] == "Job"])
    container = only(job["spec"]["template"]["spec"]["containers"])
    assert container["command"][-1] == "python -m runtime.acls apply && exec python -m runtime.topics"
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            lambda c: c.__setitem__("livenesProbe", c.pop("livenessProbe")), "livenesProbe", id="misspelled-key"
        ),
        pytest.param(
            lambda c: c["resources"].__setitem__("limit", c["resources"].pop("limits")),
            "limit",
            id="misspelled-nested-key",
        ),
        pytest.param(lambda c: c["readinessProbe"]["httpGet"].__setitem__("port", ["http"]), "port", id="wrong-type"),
    ],
)
def test_k8s_schema_rejects_a_typo_in_a_deployment(mutate: Any, expected: str) -> None:
    deployment = copy.deepcopy(deployments()["budget"])
    mutate(only(deployment["spec"]["template"]["spec"]["containers"]))
    errors = k8s_errors(deployment)
    assert len(errors) == len(K8S_VERSIONS), "every Kubernetes version must reject the mutated Deployment"
    assert all(expected in e for e in errors), errors


def test_k8s_schema_rejects_a_misspelled_key_in_a_copy_of_a_manifest(tmp_path: Path) -> None:
    text = (K8S / "review.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "review.yaml"
    broken.write_text(text.replace("readinessProbe:", "readynessProbe:", 1))
    deployment = next(doc for doc in yaml.safe_load_all(broken.read_text()) if doc["kind"] == "Deployment")
    errors = k8s_errors(deployment)
    assert len(errors) == len(K8S_VERSIONS), errors
    assert all("'readynessProbe' was unexpected" in e for e in errors), errors


def test_k8s_schema_rejects_a_misspelled_replicas_field() -> None:
    deployment = copy.deepcopy(deployments()["intake"])
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    assert k8s_errors(deployment)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S_MANIFESTS)
    assert kustomization["namespace"] == "egov"
    image = only(kustomization["images"])
    assert image["name"] == "egov-intake"
    for _, doc in k8s_documents():
        if doc["kind"] in {"Deployment", "Job"}:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert container["image"].split(":")[0] == image["name"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_k8s_environment_is_accepted_by_the_service_settings_once_secrets_are_real(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = only(deployments()[service]["spec"]["template"]["spec"]["containers"])
    # As shipped, the Secret holds placeholders, and production settings refuse them.
    with pytest.raises(ValidationError, match="placeholder"):
        load_settings(monkeypatch, service, k8s_env(container))
    settings = load_settings(monkeypatch, service, k8s_env(container, real_secrets=True))
    assert settings.environment == "production"
    assert settings.http_port == SERVICES[service]
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - inside the pod


def test_kustomize_renders_schema_valid_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl not installed: the kustomization is still checked by test_kustomization_lists_every_manifest"
        )
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(rendered) == len(list(k8s_documents()))
    for doc in rendered:
        assert k8s_errors(doc) == [], doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "egov", doc["metadata"]["name"]
