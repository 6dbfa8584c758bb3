"""Gateway wiring: schema → routes, OpenAPI, HTTP server and gRPC ingress in one process.

The kit's bootstrap runs the gRPC side (ingress, health, reflection, drain on SIGTERM);
``build`` adds the HTTP server (uvicorn on a socket bound here, so its port is known at
once) and stops it gracefully from ``on_stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from services.gateway.access import AccessPolicy
from services.gateway.backends import Backends
from services.gateway.composed import PATH_PREFIX, StorefrontProductView
from services.gateway.config import GatewaySettings
from services.gateway.connections import (
    ConnectionLimits,
    ConnectionTracker,
    file_handle_budget,
    protocol_class,
)
from services.gateway.descriptors import Schema, load_schema
from services.gateway.docs import (
    ASSETS_PREFIX,
    DocsAssets,
    docs_assets_handler,
    docs_handler,
    openapi_handler,
    storefront_openapi,
    stream_openapi,
)
from services.gateway.edge import Edge, free_port, haproxy_binary
from services.gateway.examples import EXAMPLES_PREFIX, examples_handler, redirect_to_index
from services.gateway.http import GatewayApp, Request, Send, send_json
from services.gateway.ingress import IngressHandler
from services.gateway.notifications import TRACKING_RESPONSES, NotificationRoutes
from services.gateway.openapi import OpenApiBuilder
from services.gateway.routes import Route, Router, build_route
from services.gateway.sse import OpenStreams, StreamEndpoint
from services.gateway.suggestions import PATH as SUGGESTIONS_PATH
from services.gateway.suggestions import MirrorSuggestionsView
from services.gateway.webhooks import CARRIER_METHOD, CARRIER_PATH, CarrierWebhook
from tenpo.kit.auth import TokenVerifier
from tenpo.kit.server import Runtime, ServiceDefinition
from tenpo.kit.service_token import (
    ClientCredentials,
    StaticToken,
    TokenSource,
    configured_credentials,
)

log = logging.getLogger("tenpo.gateway")

#: SSE path → server-streaming method; routes whose method or backend is missing are skipped.
STREAM_ROUTES = {
    "/v1/stream/availability": "tenpo.inventory.v1.InventoryService.WatchAvailability",
    "/v1/stream/loyalty-balance": "tenpo.customer.v1.LoyaltyService.WatchBalance",
    "/v1/stream/order": "tenpo.order.v1.OrderService.WatchOrder",
}
API_VERSION = "v1"


def build_routes(schema: Schema, backends: Backends) -> list[Route]:
    routes: list[Route] = []
    for method in schema.http_methods():
        if method.client_streaming or method.server_streaming:
            continue  # streams are served as SSE (see STREAM_ROUTES) or over gRPC only
        if not backends.configured(method.owner):
            continue
        for binding in method.bindings:
            try:
                routes.append(build_route(method, binding))
            except ValueError:
                log.warning(
                    "http rule skipped",
                    extra={"method": method.full_name, "path": binding.template},
                )
    return routes


@dataclass
class Gateway:
    """The running pieces, for tests and benchmarks."""

    settings: GatewaySettings
    schema: Schema
    app: GatewayApp
    openapi: dict[str, Any]
    http_port: int = 0
    server: uvicorn.Server | None = None
    connections: ConnectionTracker | None = None
    #: HAProxy in front of the gRPC ingress (GATEWAY_EDGE=haproxy), else None.
    edge: Edge | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The kit's bootstrap owns SIGTERM/SIGINT and stops this server through on_stop.
        yield


@dataclass
class HttpParts:
    schema: Schema
    backends: Backends
    policy: AccessPolicy
    app: GatewayApp
    openapi: dict[str, Any]
    #: Set when draining starts: open streams (SSE and ingress) end cleanly instead of
    #: being cut off when the grace period runs out.
    drain: asyncio.Event
    #: Open long-lived calls per principal: SSE routes and ingress streams share one count.
    streams: OpenStreams


def service_tokens(settings: GatewaySettings, backends: Backends) -> TokenSource | None:
    """The gateway's own token, for the calls it makes as itself: client credentials
    (configured, or the customer seed's in development), else a fixed token (tests)."""
    credentials = configured_credentials(
        "gateway",
        settings.service_client_id,
        settings.service_client_secret.get_secret_value(),
        settings.environment,
    )
    if credentials is not None and backends.configured("customer"):
        return ClientCredentials(
            backends.channel("customer"),  # connects on first use
            *credentials,
            timeout_seconds=settings.backend_timeout_seconds,
            refresh_seconds=settings.service_token_refresh_seconds,
        )
    return StaticToken(settings.service_token.get_secret_value())


def build_http(settings: GatewaySettings, verifier: TokenVerifier) -> HttpParts:
    """The HTTP/JSON side on its own: routes, composed view, streams, documents."""
    schema = load_schema(settings.descriptor_set)
    backends = Backends(settings, schema)
    policy = AccessPolicy(settings, verifier, schema)
    router = Router(build_routes(schema, backends))
    app = GatewayApp(settings, router, backends, policy)
    drain = asyncio.Event()
    extra_paths: dict[str, dict[str, Any]] = {}
    builder = OpenApiBuilder(
        schema, title="Tenpo API", version=API_VERSION, max_page_size=settings.max_page_size
    )
    view = StorefrontProductView(settings, schema, backends, policy)
    app.add_prefix("GET", PATH_PREFIX, view)
    suggestions = MirrorSuggestionsView(settings, schema, backends, policy)
    app.add_exact("GET", SUGGESTIONS_PATH, suggestions)
    extra_paths.update(storefront_openapi(builder, schema))
    streams = OpenStreams.from_settings(settings)  # one count for every route
    for path, name in STREAM_ROUTES.items():
        method = schema.method(name)
        if method is None or not backends.configured(method.owner):
            log.info("stream route skipped: no backend", extra={"path": path, "method": name})
            continue
        endpoint = StreamEndpoint(path, method, settings, backends, policy, drain, streams)
        app.add_exact("GET", path, endpoint)
        extra_paths.update(stream_openapi(builder, endpoint))
    tokens = service_tokens(settings, backends)
    NotificationRoutes(settings, schema, backends, policy, tokens).install(app)
    carrier = schema.method(CARRIER_METHOD)
    if (
        carrier is not None
        and tokens is not None
        and backends.configured(carrier.owner)
        and settings.carrier_webhook_secret.get_secret_value()
    ):
        app.add_exact("POST", CARRIER_PATH, CarrierWebhook(settings, backends, carrier, tokens))
    document = builder.build(router.routes, extra_paths, TRACKING_RESPONSES)
    app.add_exact("GET", "/openapi.json", openapi_handler(document))
    assets = DocsAssets.load()
    app.add_exact("GET", "/docs", docs_handler(assets))
    app.add_prefix("GET", ASSETS_PREFIX, docs_assets_handler(assets))
    if settings.serve_examples:
        app.add_exact("GET", EXAMPLES_PREFIX.rstrip("/"), redirect_to_index)
        app.add_prefix("GET", EXAMPLES_PREFIX, examples_handler(settings.examples_dir))
        log.info("demo touchpoints served", extra={"path": EXAMPLES_PREFIX})

    def readiness(label: str) -> Any:
        async def ready(request: Request, send: Send) -> int:
            # Readiness for HTTP load balancers and the kubelet: NOT_SERVING from the start of
            # a drain, like the gRPC health service, so traffic moves away before the server
            # stops. Not the backends' state: a service that is down is answered UNAVAILABLE
            # per call, and taking every gateway out of rotation for it would only add a 503.
            request.route_label = label
            if drain.is_set():
                await send_json(send, 503, {"status": "NOT_SERVING"})
                return 503
            await send_json(send, 200, {"status": "SERVING"})
            return 200

        return ready

    async def livez(request: Request, send: Send) -> int:
        # Liveness: the event loop answers HTTP. Stays 200 during a drain, so the kubelet
        # never restarts a gateway that is finishing its in-flight requests.
        request.route_label = "GET /livez"
        await send_json(send, 200, {"status": "ALIVE"})
        return 200

    app.add_exact("GET", "/readyz", readiness("GET /readyz"))
    app.add_exact("GET", "/healthz", readiness("GET /healthz"))
    app.add_exact("GET", "/livez", livez)
    log.info("gateway http routes", extra={"http_routes": len(router.routes)})
    return HttpParts(schema, backends, policy, app, document, drain, streams)


def build_gateway(settings: GatewaySettings, runtime: Runtime[GatewaySettings]) -> Gateway:
    parts = build_http(settings, runtime.verifier)
    schema, backends, policy, drain = parts.schema, parts.backends, parts.policy, parts.drain

    async def start_drain() -> None:
        drain.set()

    runtime.on_drain.append(start_drain)
    ingress = IngressHandler(settings, schema, backends, policy, drain, parts.streams)
    # Guarded by the kit like any servicer: tokens verified, DomainError mapped to a status.
    # Every known method is registered by name (routed in gRPC's core); the generic handler
    # stays behind them for what is not (UNIMPLEMENTED).
    for service, handlers in ingress.method_handlers().items():
        runtime.add_method_handlers(service, handlers)
    runtime.add_generic_handler(ingress, None)
    served = sorted({m.service for m in schema.methods.values() if backends.configured(m.owner)})
    runtime.service_names.extend(served)
    runtime.on_stop.append(backends.close)
    log.info("gateway grpc ingress", extra={"grpc_services": served})
    return Gateway(settings, schema, parts.app, parts.openapi)


def start_edge(gateway: Gateway, runtime: Runtime[GatewaySettings]) -> Edge:
    """HAProxy on the gateway's gRPC port (edge.py); the Python ingress moves behind it, to
    edge_ingress_port on loopback (the kit binds grpc_host:grpc_port after build)."""
    settings = runtime.settings
    haproxy_binary(settings)  # missing: the gateway does not start, and says why
    host = settings.grpc_host
    port = settings.grpc_port or free_port(host)
    ingress_port = settings.edge_ingress_port or free_port("127.0.0.1")
    settings.grpc_host, settings.grpc_port = "127.0.0.1", ingress_port
    edge = Edge(settings, gateway.schema, host, port, ingress_port)
    # Started once the ingress serves; the kit's supervisor starts it again if it exits.
    runtime.background.append(edge.run)
    runtime.on_stop.append(edge.stop)
    log.info("gateway edge", extra={"port": port, "ingress_port": ingress_port})
    return edge


def http_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and without
    # it every response written in two parts waits out the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def connection_limits(settings: GatewaySettings) -> ConnectionLimits:
    wanted = settings.http_max_connections
    budget = file_handle_budget(wanted)
    if budget < wanted:
        log.warning(
            "http_max_connections lowered to the file-handle limit",
            extra={"configured": wanted, "effective": budget},
        )
    return ConnectionLimits(
        idle_timeout=settings.http_idle_timeout_seconds,
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        max_header_bytes=settings.http_max_header_bytes,
        max_connections=budget,
        # Behind trusted proxies every TCP peer is a proxy: they enforce per-client caps.
        max_per_address=0
        if settings.forwarded_for_hops
        else settings.http_max_connections_per_address,
    )


async def start_http(gateway: Gateway, runtime: Runtime[GatewaySettings]) -> None:
    settings = gateway.settings
    gateway.connections = ConnectionTracker(connection_limits(settings))
    config = uvicorn.Config(
        gateway.app,
        http=protocol_class(gateway.connections),  # httptools with timeouts and caps
        lifespan="off",
        access_log=False,  # the app writes its own, without personal data
        log_config=None,
        proxy_headers=False,  # X-Forwarded-For is honoured only per forwarded_for_hops
        server_header=False,
        timeout_keep_alive=math.ceil(settings.http_idle_timeout_seconds),
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) or None,
        backlog=2048,
    )
    server = _Server(config)
    sock = http_socket(settings.http_host, settings.http_port)
    gateway.http_port = sock.getsockname()[1]
    gateway.server = server
    gateway._task = asyncio.create_task(server.serve(sockets=[sock]), name="gateway-http")

    async def stop_http() -> None:
        server.should_exit = True
        if gateway._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await gateway._task
        sock.close()

    runtime.on_stop.insert(0, stop_http)
    for _ in range(200):
        if server.started or gateway._task.done():
            break
        await asyncio.sleep(0.01)
    if gateway._task.done():
        gateway._task.result()  # raises the start-up failure
    log.info("http serving", extra={"host": settings.http_host, "port": gateway.http_port})


class GatewayService:
    """The gateway as a kit service definition; keeps hold of the running pieces."""

    def __init__(self) -> None:
        self.gateway: Gateway | None = None
        self.definition: ServiceDefinition[GatewaySettings] = ServiceDefinition(
            name="gateway",
            settings_type=GatewaySettings,
            build=self.build,
            uses_database=False,
            uses_events=False,
        )

    async def build(self, runtime: Runtime[GatewaySettings]) -> None:
        self.gateway = build_gateway(runtime.settings, runtime)
        if runtime.settings.edge == "haproxy":
            self.gateway.edge = start_edge(self.gateway, runtime)
        runtime.parts["gateway"] = self.gateway
        await start_http(self.gateway, runtime)


definition = GatewayService().definition
