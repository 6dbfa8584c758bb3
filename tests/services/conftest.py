"""Fixtures shared by service tests: signing keys, tokens per principal kind, in-process
services on ephemeral ports against the session's PostgreSQL and NATS."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tenpo.devtools.keys import DevKeys, ensure_dev_keys, mint_token
from tenpo.kit.auth import ChannelAssertion
from tenpo.kit.settings import DEV_CHANNEL_ASSERTION_SECRET
from tests.conftest import scratch_dir


def _import_generated_protos() -> None:
    """Every generated ``*_pb2`` module, before any test runs: the gateway's schema loader
    adds the descriptor set's files to the default pool, and a generated module imported
    only after that (in this one test process) would clash with that copy of its file."""
    from tenpo.common.v1 import common_pb2

    root = Path(common_pb2.__file__).parents[3]  # libs/protos, holding tenpo/
    for path in sorted(root.glob("tenpo/*/v1/*_pb2.py")):
        importlib.import_module(".".join(path.relative_to(root).with_suffix("").parts))


_import_generated_protos()

ISSUER = "https://auth.test.tenpo"
AUDIENCE = "tenpo"


def _register_generated_protos() -> None:
    """Import every generated module before any test module loads: the gateway's tests add
    the descriptor set's copies of the files to the default pool at import, and the pool then
    refuses the generated module's (differing) copy of a file not imported before."""
    from tenpo.common.v1 import common_pb2

    generated = Path(common_pb2.__file__).parents[2]
    for module in sorted(generated.glob("*/v1/*_pb2.py")):
        relative = module.relative_to(generated.parent).with_suffix("")
        importlib.import_module(".".join(relative.parts))


_register_generated_protos()


@pytest.fixture(scope="session")
def dev_keys() -> Iterator[DevKeys]:
    with scratch_dir("tenpo-test-keys-") as root:
        yield ensure_dev_keys(root)


@dataclass(frozen=True)
class Tokens:
    keys: DevKeys

    def mint(self, **claims: object) -> str:
        return mint_token(
            self.keys.private_key_pem,
            self.keys.kid,
            issuer=ISSUER,
            audience=AUDIENCE,
            **claims,  # type: ignore[arg-type]
        )

    def metadata(self, token: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),)

    @property
    def staff(self) -> tuple[tuple[str, str], ...]:
        return self.metadata(
            self.mint(
                subject="staff-merch-1",
                kind="staff",
                scopes=["catalog:write", "inventory:write"],
                channel="BACK_OFFICE",
            )
        )

    @property
    def staff_without_scope(self) -> tuple[tuple[str, str], ...]:
        return self.metadata(
            self.mint(subject="staff-cs-1", kind="staff", scopes=["customers:read"])
        )

    @property
    def customer(self) -> tuple[tuple[str, str], ...]:
        return self.metadata(self.mint(subject="customer-1", kind="customer", channel="APP"))

    def device(self, channel: str, store: str = "shibuya") -> tuple[tuple[str, str], ...]:
        return self.metadata(
            self.mint(
                subject=f"device-{channel.lower()}-1",
                kind="device",
                channel=channel,
                store_id=store,
            )
        )


@pytest.fixture(scope="session")
def tokens(dev_keys: DevKeys) -> Tokens:
    return Tokens(dev_keys)


def gateway_channel(name: str) -> tuple[tuple[str, str], ...]:
    """``x-tenpo-channel`` as the gateway sends it: with its proof, under the development
    secret the services in tests run with. A bare header is ignored by the services."""
    return ChannelAssertion(DEV_CHANNEL_ASSERTION_SECRET).metadata(name)


def auth_settings(dev_keys: DevKeys) -> dict[str, object]:
    return {
        "auth_jwks_file": Path(dev_keys.jwks_path),
        "auth_issuer": ISSUER,
        "auth_audience": AUDIENCE,
    }
