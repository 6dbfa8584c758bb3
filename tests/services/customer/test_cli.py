"""``python -m services.customer bootstrap-staff``: the first staff user of a deployment."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from services.customer.cli import PASSWORD_ENV, bootstrap_staff
from services.customer.models import staff_users
from tenpo.customer.v1 import identity_service_pb2 as ids
from tenpo.customer.v1 import resources_pb2 as pb
from tests.services.customer.conftest import Service, bearer, expect_error

OPS_EMAIL = "ops@minatoya.example"
ROOT = Path(__file__).resolve().parents[3]
STAFF_PASSWORD = "gently rolling tea fields"


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


async def _staff_count(service: Service) -> int:
    async with service.db.engine.connect() as conn:
        return int(
            (await conn.execute(sa.select(sa.func.count()).select_from(staff_users))).scalar_one()
        )


async def _sign_in(service: Service, email: str, password: str = STAFF_PASSWORD) -> Any:
    return await service.identity.SignInStaff(
        ids.SignInStaffRequest(email=email, password=password)
    )


async def test_bootstrap_creates_the_first_staff_user_once(
    service_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh: Service = await service_factory()
    settings = fresh.host.settings
    monkeypatch.setenv(PASSWORD_ENV, STAFF_PASSWORD)
    assert await bootstrap_staff(settings, ["--email", "admin@minatoya.example"]) == 0

    signed_in = await _sign_in(fresh, "admin@minatoya.example")
    claims = _claims(signed_in.tokens.access_token)
    assert claims["kind"] == "staff" and "clients:write" in claims["scope"].split()
    # What the bootstrap is for: this staff user can create the store devices.
    created = await fresh.identity.CreateClient(
        ids.CreateClientRequest(
            client=pb.Client(display_name="till 1", kind=pb.CLIENT_KIND_BACK_OFFICE_TOOL)
        ),
        metadata=bearer(signed_in.tokens.access_token),
    )
    assert created.client_secret

    # Once staff exist, the command refuses and changes nothing.
    monkeypatch.setenv(PASSWORD_ENV, "another password of someone")
    assert await bootstrap_staff(settings, ["--email", "intruder@minatoya.example"]) == 3
    assert await _staff_count(fresh) == 1
    await expect_error(
        _sign_in(fresh, "intruder@minatoya.example", "another password of someone"),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_CREDENTIALS",
    )
    # ... unless told otherwise, e.g. to add a second one with chosen scopes.
    argv = ["--email", "auditor@minatoya.example", "--scope", "customers:read"]
    assert await bootstrap_staff(settings, [*argv, "--even-if-staff-exist"]) == 0
    auditor = await _sign_in(fresh, "auditor@minatoya.example", "another password of someone")
    assert _claims(auditor.tokens.access_token)["scope"] == "customers:read"


async def test_bootstrap_refuses_bad_input_and_creates_nothing(
    service_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fresh: Service = await service_factory()
    monkeypatch.setenv(PASSWORD_ENV, "short")
    assert await bootstrap_staff(fresh.host.settings, ["--email", "not-an-email"]) == 2
    errors = capsys.readouterr().err
    assert "STAFF_INVALID" in errors and "email" in errors and "password" in errors
    assert "short" not in errors  # the password is never echoed
    assert await _staff_count(fresh) == 0


async def test_concurrent_bootstraps_create_one_staff_user(
    service_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh: Service = await service_factory()
    monkeypatch.setenv(PASSWORD_ENV, STAFF_PASSWORD)
    codes = await asyncio.gather(
        *(
            bootstrap_staff(fresh.host.settings, ["--email", f"admin{i}@minatoya.example"])
            for i in range(4)
        )
    )
    assert sorted(codes) == [0, 3, 3, 3]
    assert await _staff_count(fresh) == 1


async def test_bootstrap_runs_with_production_settings_reading_the_password_from_stdin(
    service_factory: Callable[..., Any],
) -> None:
    fresh: Service = await service_factory()
    settings = fresh.host.settings
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TENPO_", "CUSTOMER_"))
    }
    env.update(
        {
            "CUSTOMER_ENVIRONMENT": "production",
            "CUSTOMER_DATABASE_URL": settings.database_url,
            "CUSTOMER_PAGE_TOKEN_SECRET": "p" * 40,
            "TENPO_CHANNEL_ASSERTION_SECRET": "c" * 40,
            "CUSTOMER_AUTH_JWKS_FILE": str(settings.auth_jwks_file),
            "CUSTOMER_AUTH_ISSUER": settings.auth_issuer,
            "CUSTOMER_AUTH_AUDIENCE": settings.auth_audience,
            "CUSTOMER_SIGNING_KEY_FILES": json.dumps([str(p) for p in settings.signing_key_files]),
            "CUSTOMER_LOG_FORMAT": "json",
            "CUSTOMER_INVENTORY_TARGET": settings.inventory_target,
            "CUSTOMER_ARGON2_MEMORY_KIB": str(19 * 1024),
            "CUSTOMER_ARGON2_TIME_COST": "2",
        }
    )
    run = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "services.customer",
            "bootstrap-staff",
            "--email",
            "ops@minatoya.example",
        ],
        input=STAFF_PASSWORD + "\n",
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert OPS_EMAIL in run.stdout and STAFF_PASSWORD not in run.stdout + run.stderr
    signed_in = await _sign_in(fresh, OPS_EMAIL)
    assert _claims(signed_in.tokens.access_token)["kind"] == "staff"
