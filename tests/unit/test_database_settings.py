"""Production settings refuse a PostgreSQL connection that is unencrypted, unverified or made with
the role that owns the tables; development keeps plain loopback."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from runtime.settings import ServiceSettings

pytestmark = pytest.mark.unit

RUNTIME = SecretStr("postgresql://egov_budget:s3cret-runtime@db.internal:5432/egov_budget")
OWNER = SecretStr("postgresql://egov_budget_owner:s3cret-owner@db.internal:5432/egov_budget")


def production(**overrides: object) -> ServiceSettings:
    values: dict[str, object] = {
        "environment": "production",
        "database_url": RUNTIME,
        "database_owner_url": OWNER,
        "database_sslmode": "verify-full",
        # Production also insists on an authenticated Kafka principal (tests/unit/test_kafka_security.py).
        "kafka_username": "budget",
        "kafka_password": SecretStr("s3cret-kafka"),
        **overrides,
    }
    return ServiceSettings(**values)  # type: ignore[arg-type]


def test_development_defaults_to_plain_loopback() -> None:
    settings = ServiceSettings()
    assert settings.database_sslmode == "disable"
    assert settings.database_tls() is False
    assert "@127.0.0.1:" in settings.dsn


def test_production_accepts_verify_full_with_separate_owner_and_runtime_roles() -> None:
    tls = production().database_tls()
    assert isinstance(tls, ssl.SSLContext)
    assert tls.check_hostname is True
    assert tls.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("mode", ["disable", "prefer", "require", "verify-ca"])
def test_production_refuses_tls_below_verify_full(mode: str) -> None:
    with pytest.raises(ValidationError, match="database_sslmode must be verify-full"):
        production(database_sslmode=mode)


def test_production_refuses_a_missing_owner_role() -> None:
    with pytest.raises(ValidationError, match="database_owner_url must be set"):
        production(database_owner_url=None)


def test_production_refuses_the_owner_as_runtime_login() -> None:
    with pytest.raises(ValidationError, match="different roles"):
        production(database_url=OWNER)


def test_production_refuses_a_placeholder_owner_password() -> None:
    placeholder = SecretStr("postgresql://egov_budget_owner:owner-dev-only@db.internal:5432/egov_budget")
    with pytest.raises(ValidationError, match="placeholder"):
        production(database_owner_url=placeholder)


def test_verify_ca_checks_the_chain_but_not_the_name() -> None:
    tls = ServiceSettings(database_sslmode="verify-ca").database_tls()
    assert isinstance(tls, ssl.SSLContext)
    assert tls.check_hostname is False
    assert tls.verify_mode == ssl.CERT_REQUIRED


def test_a_missing_root_certificate_fails_loudly(tmp_path: Path) -> None:
    settings = ServiceSettings(database_sslmode="verify-full", database_ssl_root_cert=tmp_path / "absent.pem")
    with pytest.raises(FileNotFoundError):
        settings.database_tls()


def test_the_environment_sets_the_tls_fields(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from services.budget.settings import BudgetSettings

    monkeypatch.setenv("BUDGET_DATABASE_SSLMODE", "verify-full")
    monkeypatch.setenv("BUDGET_DATABASE_SSL_ROOT_CERT", str(tmp_path / "ca.pem"))
    settings = BudgetSettings()
    assert settings.database_sslmode == "verify-full"
    assert settings.database_ssl_root_cert == tmp_path / "ca.pem"
