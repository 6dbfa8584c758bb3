"""The HTTP/JSON side alone as an ASGI application factory, for running it under another
ASGI server or as extra HTTP worker processes: ``uvicorn --factory
services.gateway.asgi:create_app`` (settings from the environment, as for the gateway).
The gRPC ingress is not part of it; ``python -m services.gateway`` runs both."""

from __future__ import annotations

from services.gateway.app import build_http
from services.gateway.config import GatewaySettings
from services.gateway.http import GatewayApp
from tenpo.kit.auth import TokenVerifier


def create_app() -> GatewayApp:
    settings = GatewaySettings()
    return build_http(settings, TokenVerifier.from_settings(settings)).app
