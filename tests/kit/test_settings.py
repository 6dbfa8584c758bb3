"""Settings: shared TENPO_ variables, service prefixes, unsafe defaults refused in production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from tenpo.kit.settings import Environment, ServiceSettings


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")


def test_service_prefix_wins_over_shared_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENPO_NATS_URL", "nats://shared:4222")
    monkeypatch.setenv("TENPO_GRPC_PORT", "1111")
    monkeypatch.setenv("DEMO_GRPC_PORT", "2222")
    settings = DemoSettings()
    assert settings.nats_url == "nats://shared:4222"
    assert settings.grpc_port == 2222


def test_development_defaults_are_accepted() -> None:
    assert DemoSettings().environment is Environment.DEVELOPMENT


def test_production_refuses_development_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_ENVIRONMENT", "production")
    with pytest.raises(ValidationError) as caught:
        DemoSettings()
    message = str(caught.value)
    assert "page_token_secret is the development default" in message
    assert "channel_assertion_secret is the development default" in message
    assert "auth_jwks_url" in message
    assert "database_url" in message


def test_production_with_real_settings_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_ENVIRONMENT", "production")
    monkeypatch.setenv("DEMO_PAGE_TOKEN_SECRET", "x" * 40)
    # One assertion secret for the gateway and every service: the shared prefix serves all.
    monkeypatch.setenv("TENPO_CHANNEL_ASSERTION_SECRET", "c" * 40)
    monkeypatch.setenv("DEMO_AUTH_JWKS_URL", "https://customer.tenpo.example/.well-known/jwks.json")
    monkeypatch.setenv("DEMO_DATABASE_URL", "postgresql+asyncpg://demo@db/demo")
    assert DemoSettings().environment is Environment.PRODUCTION

    monkeypatch.setenv("DEMO_AUTH_JWKS_URL", "http://customer/.well-known/jwks.json")
    with pytest.raises(ValidationError, match="https"):
        DemoSettings()


class NoDatabaseSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NODB_")
    requires_database = False


def test_a_service_without_a_database_needs_no_database_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for prefix in ("NODB", "DEMO"):
        monkeypatch.setenv(f"{prefix}_ENVIRONMENT", "production")
        monkeypatch.setenv(f"{prefix}_PAGE_TOKEN_SECRET", "x" * 40)
        monkeypatch.setenv(f"{prefix}_CHANNEL_ASSERTION_SECRET", "c" * 40)
        monkeypatch.setenv(f"{prefix}_AUTH_JWKS_URL", "https://customer.example/jwks.json")
    assert NoDatabaseSettings().database_url == ""
    with pytest.raises(ValidationError, match="database_url"):
        DemoSettings()
