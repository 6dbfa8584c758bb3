"""A service's own token for the calls it makes as itself: client credentials exchanged at the
customer service (``IdentityService.SignInClient``, a back-office-tool client, whose tokens
are service tokens), reused until shortly before they expire.

In development the credentials come from the customer seed's
``$TENPO_DATA_DIR/dev-credentials.json`` (``services.<name>``), as ``make run`` leaves it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import grpc

from tenpo.customer.v1 import identity_service_pb2 as identity_api
from tenpo.customer.v1 import identity_service_pb2_grpc as identity_grpc
from tenpo.kit.cache import RefreshingValue
from tenpo.kit.errors import Unavailable
from tenpo.kit.settings import Environment

Metadata = tuple[tuple[str, str], ...]

#: Answers of the customer service that say "not now" rather than "never".
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)


class TokenSource(Protocol):
    async def metadata(self) -> Metadata:
        """``authorization`` metadata for one call; Unavailable when no token can be had."""
        ...

    def invalidate(self) -> None:
        """Forget the token (the callee answered UNAUTHENTICATED)."""
        ...


class ClientCredentials:
    """Signs in with ``client_id``/``client_secret`` on first use and every
    ``refresh_seconds`` (keep it below the client-token lifetime) or after ``invalidate``.

    A customer service that does not answer is Unavailable ``CUSTOMER_UNAVAILABLE``
    (the caller retries later); refused credentials are Unavailable
    ``SERVICE_CREDENTIALS_REJECTED`` (a configuration error the operator must see)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        client_id: str,
        client_secret: str,
        *,
        timeout_seconds: float,
        refresh_seconds: float = 300.0,
    ) -> None:
        self._stub = identity_grpc.IdentityServiceStub(channel)
        self._request = identity_api.SignInClientRequest(
            client_id=client_id, client_secret=client_secret
        )
        self._timeout = timeout_seconds
        self._token: RefreshingValue[str] = RefreshingValue(self._sign_in, refresh_seconds)

    async def _sign_in(self) -> str:
        try:
            response = await self._stub.SignInClient(self._request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() in _TRANSIENT:
                raise Unavailable(
                    "the customer service did not answer the sign-in",
                    reason="CUSTOMER_UNAVAILABLE",
                ) from None
            raise Unavailable(
                "this service's client credentials were refused",
                reason="SERVICE_CREDENTIALS_REJECTED",
            ) from None
        return str(response.tokens.access_token)

    async def metadata(self) -> Metadata:
        return (("authorization", f"Bearer {await self._token.get()}"),)

    def invalidate(self) -> None:
        self._token.invalidate()


class StaticToken:
    """A fixed token (tests, or one the platform injects)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def metadata(self) -> Metadata:
        return (("authorization", f"Bearer {self._token}"),) if self._token else ()

    def invalidate(self) -> None:
        return None


def configured_credentials(
    service: str, client_id: str, client_secret: str, environment: Environment
) -> tuple[str, str] | None:
    """The configured credentials; in development, else the ones the customer seed left in
    ``$TENPO_DATA_DIR/dev-credentials.json`` under ``services.<service>``."""
    if client_id and client_secret:
        return client_id, client_secret
    data_dir = os.environ.get("TENPO_DATA_DIR")
    if environment is Environment.PRODUCTION or not data_dir:
        return None
    try:
        document = json.loads((Path(data_dir) / "dev-credentials.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    entry = document.get("services", {}).get(service) if isinstance(document, dict) else None
    if not isinstance(entry, dict) or "client_id" not in entry or "client_secret" not in entry:
        return None
    return str(entry["client_id"]), str(entry["client_secret"])
