"""Gateway settings (environment prefix GATEWAY_, shared TENPO_ fallback)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tenpo.kit.auth import channel_from_name
from tenpo.kit.settings import Environment, ServiceSettings

#: Development publishable keys; refused outside development.
DEV_PUBLISHABLE_KEYS = {
    "pk_web_dev_tenpo_0000000000": "WEB",
    "pk_app_dev_tenpo_0000000000": "APP",
}
#: ``examples/`` next to ``services/`` in the source tree (absent from the production image).
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
_TARGET_VARIABLE = re.compile(r"^TENPO_([A-Z][A-Z0-9_]*)_TARGET$")


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")
    requires_database: ClassVar[bool] = False
    requires_database = False  # rate-limit state only, in memory

    service_name: str = "gateway"
    #: gRPC ingress (devices): forwards any tenpo.* call.
    grpc_port: int = 50050
    #: What listens on grpc_port: ``off`` — the Python ingress itself; ``haproxy`` — HAProxy
    #: (a child of this process, Debian's ``haproxy`` or the official image), which sends
    #: signed-in unary calls with no gateway-only input straight to the owning service and
    #: everything else to the Python ingress, which then listens on edge_ingress_port (see
    #: edge.py). On Kubernetes HAProxy runs beside the gateway instead (the ``grpc-edge``
    #: component) from the configuration ``python -m services.gateway.edge`` renders.
    edge: str = Field(default="off", pattern="^(off|haproxy)$")
    #: The Python ingress's port behind the edge (0: a free port, chosen at start).
    edge_ingress_port: int = Field(default=0, ge=0, le=65535)
    #: The Python ingress runs behind an edge started elsewhere (the Kubernetes component):
    #: it takes the client's address from the edge's ``x-tenpo-edge-client``.
    behind_edge: bool = False
    #: The HAProxy binary; default: ``haproxy`` on PATH, else ``/usr/sbin/haproxy``.
    edge_binary: str = ""
    #: Connections the edge accepts in all (a child edge: lowered to what the file-handle
    #: limit allows, two per connection) and per client address (0: no per-address cap;
    #: set it to 0 behind a load balancer, where every peer is the balancer).
    edge_max_connections: int = Field(default=4096, ge=1)
    edge_max_connections_per_address: int = Field(default=128, ge=0)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    #: Event loop of the process: uvloop (measured faster, see the bench) or asyncio.
    event_loop: str = Field(default="uvloop", pattern="^(uvloop|asyncio)$")
    #: Descriptor set to read routes from; default: the one next to the generated protos.
    descriptor_set: Path | None = None
    #: Backend address per service (``{"catalog": "10.0.0.5:50051"}``); ``TENPO_<SVC>_TARGET``
    #: variables fill in the services not named here.
    targets: dict[str, str] = {}

    #: Publishable key → channel (``WEB``, ``APP``, ...). Anonymous browsing needs one.
    publishable_keys: dict[str, str] = dict(DEV_PUBLISHABLE_KEYS)
    # Who may call which method (and which get the sign-in limit) is no setting: each
    # method's contract states it in its (tenpo.common.v1.access) option.

    #: Token buckets: sustained requests per second and burst. In memory, per replica.
    principal_rate: float = Field(default=50.0, gt=0)
    principal_burst: float = Field(default=100.0, ge=1)
    address_rate: float = Field(default=20.0, gt=0)
    address_burst: float = Field(default=40.0, ge=1)
    api_key_rate: float = Field(default=2000.0, gt=0)
    api_key_burst: float = Field(default=4000.0, ge=1)
    sign_in_rate: float = Field(default=0.2, gt=0)
    sign_in_burst: float = Field(default=10.0, ge=1)
    #: Buckets kept per limiter: beyond it, full buckets go, least recently used first; one
    #: still refilling (a client in its penalty) is never dropped.
    rate_limit_max_keys: int = Field(default=100_000, ge=100)
    #: Proxies in front of the gateway whose X-Forwarded-For entries are trusted (0: none;
    #: the client address is the TCP peer).
    forwarded_for_hops: int = Field(default=0, ge=0, le=10)

    #: HTTP connections (see connections.py): a connection with no request under way is
    #: closed after the idle timeout; a request's headers must arrive within the header
    #: timeout (else 408) and fit in max_header_bytes (else 431), its body within the body
    #: timeout (else 408).
    http_idle_timeout_seconds: float = Field(default=30.0, gt=0)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0)
    http_max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    #: Open HTTP connections in all (lowered to the file-handle limit less a reserve) and
    #: per client address (0: no per-address cap; off behind proxies, forwarded_for_hops>0,
    #: where every peer is a proxy). Beyond them: 503 and closed at once.
    http_max_connections: int = Field(default=4096, ge=1)
    http_max_connections_per_address: int = Field(default=128, ge=0)

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: page_size of any request is clamped to this.
    max_page_size: int = Field(default=100, ge=1)
    cors_allowed_origins: list[str] = ["http://localhost:3000", "http://127.0.0.1:3000"]
    cors_max_age_seconds: int = 600

    #: Deadline of every backend call made for an HTTP request or a unary ingress call.
    backend_timeout_seconds: float = Field(default=5.0, gt=0)
    #: Deadline of the whole composed product view; each part gets what is left.
    composed_timeout_seconds: float = Field(default=1.5, gt=0)
    #: Variants whose nearby availability the product view asks for.
    composed_max_variants: int = Field(default=8, ge=1)
    #: Longest a stream (SSE or ingress streaming call) stays open.
    stream_max_seconds: float = Field(default=3600.0, gt=0)
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    #: Open streams (SSE and ingress streaming calls) one signed-in principal may hold at
    #: once, across addresses (each is a backend stream; some poll a database). 0: no cap.
    stream_max_per_principal: int = Field(default=16, ge=0)
    #: Open streams anonymous callers (a publishable key, no token) may hold at once from
    #: one client address: one HTTP/2 connection to the ingress carries any number of
    #: streams, so the per-address connection cap does not bound them. 0: no cap.
    stream_max_per_address: int = Field(default=128, ge=0)
    access_log: bool = True
    #: Memory for rendered JSON of hot backend responses (0 turns the cache off).
    render_cache_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    #: The demo touchpoints (web shop, kiosk, mirror, staff, dev inbox) under ``/examples/``.
    #: Unset: on in development only. They carry the development publishable keys, so they
    #: are refused outside development.
    serve_examples: bool | None = None
    #: Where the demo pages are; default: ``examples/`` of the source tree.
    examples_dir: Path = Field(default_factory=lambda: EXAMPLES_DIR)

    #: Hosts a tracked click may redirect to ("shop.example.jp"; ".example.jp" also admits
    #: its subdomains). Anything else is refused (403 REDIRECT_NOT_ALLOWED).
    redirect_allowed_hosts: list[str] = ["localhost", "127.0.0.1"]
    #: Key of the SMS/e-mail providers' delivery callbacks (HMAC-SHA256 of the raw body in
    #: X-Tenpo-Signature); empty: the callback route is not served. At least 32 characters.
    provider_callback_secret: SecretStr = SecretStr("")
    #: The gateway's own client credentials (scope notifications:callbacks), for the calls
    #: it makes as itself (delivery callbacks); in development from the customer seed.
    service_client_id: str = ""
    service_client_secret: SecretStr = SecretStr("")
    service_token_refresh_seconds: float = Field(default=300.0, gt=0)
    #: A fixed service token instead (tests); client credentials win when both are set.
    service_token: SecretStr = SecretStr("")
    #: The carrier webhook (POST /v1/webhooks/carrier): the secret carriers sign request
    #: bodies with (HMAC-SHA256); empty: the route is not served. At least 32 characters.
    #: The gateway calls the order service as itself (service credentials above).
    carrier_webhook_secret: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _gateway_checks(self) -> Self:
        targets = dict(self.targets)
        for name, value in os.environ.items():
            match = _TARGET_VARIABLE.match(name)
            if match and value:
                targets.setdefault(match.group(1).lower(), value)
        self.targets = targets
        if self.edge != "off" and self.workers > 1:
            raise ValueError("the edge runs in one gateway process: edge=haproxy needs workers=1")
        for key, channel in self.publishable_keys.items():
            if channel_from_name(channel) is None:
                raise ValueError(f"publishable key {key[:8]}… names an unknown channel")
        if self.serve_examples is None:
            self.serve_examples = self.environment is Environment.DEVELOPMENT
        if self.environment is not Environment.DEVELOPMENT:
            if self.serve_examples:
                raise ValueError("serve_examples is refused outside development")
            dev = set(DEV_PUBLISHABLE_KEYS) & set(self.publishable_keys)
            if dev:
                raise ValueError("development publishable keys are refused outside development")
            if "*" in self.cors_allowed_origins:
                raise ValueError("cors_allowed_origins='*' is refused outside development")
        for name in ("provider_callback_secret", "carrier_webhook_secret"):
            secret = getattr(self, name).get_secret_value()
            if secret and len(secret) < 32:
                raise ValueError(f"{name} must have at least 32 characters")
        return self

    def target(self, service: str) -> str | None:
        return self.targets.get(service)
