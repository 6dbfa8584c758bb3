"""Service bootstrap: the shared start-up every service's ``__main__`` hands its parts to."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.metrics import MeterProvider

from tenpo.kit.auth import JwksSource, TokenVerifier
from tenpo.kit.db import Database
from tenpo.kit.events import Consumer, EventBus, OutboxRelay, Subscription
from tenpo.kit.guard import CallGuard, GuardedServer
from tenpo.kit.logging import configure_logging
from tenpo.kit.metrics import RpcMetricsInterceptor
from tenpo.kit.outage import OutageLog
from tenpo.kit.pagination import PageTokenCodec
from tenpo.kit.ratelimit import TokenBucketLimiter
from tenpo.kit.settings import ServiceSettings
from tenpo.kit.telemetry import configure_telemetry

log = logging.getLogger("tenpo.server")
S = TypeVar("S", bound=ServiceSettings)


class Runtime(Generic[S]):
    """What a service's ``build`` function gets: its settings and the shared machinery, and
    the place to register servicers, subscriptions and background tasks."""

    def __init__(
        self,
        settings: S,
        server: grpc.aio.Server,
        db: Database | None,
        bus: EventBus | None,
        verifier: TokenVerifier | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.settings = settings
        self.server = server
        self._db = db
        self._bus = bus
        self.verifier = verifier or TokenVerifier.from_settings(settings)
        edge_limiter = TokenBucketLimiter(
            settings.edge_principal_rate, settings.edge_principal_burst
        )
        self._guarded = GuardedServer(
            server, CallGuard(self.verifier, meter_provider, edge_limiter=edge_limiter)
        )
        self.page_tokens = PageTokenCodec(settings.page_token_secret.get_secret_value())
        self.service_names: list[str] = []
        self.subscriptions: list[Subscription] = []
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        #: Called when draining starts (health NOT_SERVING, before the server stops taking
        #: calls): end long-lived streams here so they close with OK, not by cancellation.
        self.on_drain: list[Callable[[], Awaitable[None]]] = []
        #: Called after the server stopped and in-flight calls finished.
        self.on_stop: list[Callable[[], Awaitable[None]]] = []
        #: A service's own parts, for in-process tests and benchmarks to reach.
        self.parts: dict[str, Any] = {}

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("this service has no database configured (DATABASE_URL)")
        return self._db

    @property
    def bus(self) -> EventBus:
        if self._bus is None:
            raise RuntimeError("this service runs without an event bus")
        return self._bus

    def add_servicer(
        self, add_to_server: Callable[[Any, grpc.aio.Server], None], servicer: Any, full_name: str
    ) -> None:
        """Register a servicer (its handlers guarded: auth, error mapping); ``full_name``
        (``tenpo.catalog.v1.CatalogService``) goes to health and reflection."""
        add_to_server(servicer, self._guarded)  # type: ignore[arg-type]
        self.service_names.append(full_name)

    def add_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        """Register hand-built handlers of one service by method name (guarded likewise);
        the caller names the service for health and reflection. gRPC matches registered
        methods in its core, where a generic handler is asked in Python on every call."""
        self._guarded.add_registered_method_handlers(service, handlers)

    def add_generic_handler(self, handler: grpc.GenericRpcHandler, full_name: str | None) -> None:
        """Register a generic handler (hand-built handlers, proxies), guarded likewise."""
        self._guarded.add_generic_rpc_handlers((handler,))
        if full_name:
            self.service_names.append(full_name)

    def subscribe(self, subscription: Subscription) -> None:
        self.subscriptions.append(subscription)


@dataclass
class ServiceDefinition(Generic[S]):
    """A service, as its ``__main__`` describes it to the bootstrap."""

    name: str
    settings_type: type[S]
    build: Callable[[Runtime[S]], Awaitable[None]]
    migrations: Path | None = None
    seed: Callable[[Runtime[S]], Awaitable[None]] | None = None
    #: Where this service's verifier gets its keys, when not from the settings' JWKS: the
    #: token issuer verifies against its own key ring instead of fetching its own JWKS.
    jwks_source: Callable[[S], JwksSource] | None = None
    uses_database: bool = True
    uses_events: bool = True
    extra_cli: dict[str, Callable[[S, list[str]], Coroutine[Any, Any, int]]] = field(
        default_factory=dict
    )


#: File handles kept for what is not a client connection (database pool, NATS, channels to
#: other services, logs) when the connection cap is lowered to the file-handle limit.
RESERVED_FILE_HANDLES = 256


def _connection_cap(wanted: int) -> list[tuple[str, int]]:
    """The gRPC server option capping open connections: ``wanted``, or fewer when the
    process may not open that many files (a cap above the limit would never be reached
    before the file handles run out). Nothing for 0 (no cap)."""
    if not wanted:
        return []
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft - RESERVED_FILE_HANDLES < wanted:
        effective = max(1, soft - RESERVED_FILE_HANDLES)
        log.warning(
            "grpc_max_connections lowered to the file-handle limit",
            extra={"configured": wanted, "effective": effective},
        )
        wanted = effective
    return [("grpc.max_allowed_incoming_connections", wanted)]


class ServiceHost(Generic[S]):
    """One running gRPC server of a service: start, serve, drain, stop. Tests run it in
    process on an ephemeral port; ``main`` runs it until SIGTERM."""

    def __init__(
        self,
        definition: ServiceDefinition[S],
        settings: S,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.definition = definition
        self.settings = settings
        #: Where metrics go: the global provider (tenpo.kit.telemetry) unless a test gives
        #: one with an in-memory reader.
        self.meter_provider = meter_provider
        self.port = 0
        self.runtime: Runtime[S] | None = None
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._tasks: list[asyncio.Task[None]] = []
        self._db: Database | None = None
        self._bus: EventBus | None = None
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        settings = self.settings
        telemetry = bool(settings.otel_exporter_otlp_endpoint or settings.otel_console)
        measured = telemetry or self.meter_provider is not None
        if self.definition.uses_database:
            self._db = Database(
                settings.database_url,
                pool_size=settings.database_pool_size,
                max_overflow=settings.database_max_overflow,
                instrument=measured,
                meter_provider=self.meter_provider,
            )
        if self.definition.uses_events:
            self._bus = EventBus(
                settings.nats_url,
                replicas=settings.nats_stream_replicas,
                name=f"tenpo-{settings.service_name}",
            )
            # Connected in the background: a broker that is down must not keep the service
            # from serving. Writes go to the outbox meanwhile; the relay and the consumers
            # wait for the bus (EventBus.wait_connected).
            self._spawn(partial(self._bus.run, [self.definition.name]), "event-bus")
        jwks = self.definition.jwks_source(settings) if self.definition.jwks_source else None
        verifier = TokenVerifier.from_settings(settings, jwks)
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if measured:
            # Duration per RPC and status (rate and errors follow), outermost so it sees the
            # status the guard settles on.
            interceptors.append(RpcMetricsInterceptor(self.meter_provider))
        if telemetry:
            # A span per call is worth its cost only when someone collects it.
            interceptors.append(aio_server_interceptor())
        server = grpc.aio.server(
            interceptors=interceptors or None,
            options=[
                ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
                ("grpc.max_receive_message_length", settings.max_request_bytes),
                ("grpc.max_send_message_length", 16 * 1024 * 1024),
                (
                    "grpc.server_handshake_timeout_ms",
                    int(settings.grpc_handshake_timeout_seconds * 1000),
                ),
                (
                    "grpc.max_connection_idle_ms",
                    int(settings.grpc_max_connection_idle_seconds * 1000),
                ),
                (
                    "grpc.server_max_unrequested_time_in_server",
                    max(1, int(settings.grpc_max_unrequested_seconds)),
                ),
                *_connection_cap(settings.grpc_max_connections),
            ],
        )
        self._server = server
        runtime = Runtime(settings, server, self._db, self._bus, verifier, self.meter_provider)
        self.runtime = runtime
        await self.definition.build(runtime)

        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [
            *runtime.service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, server)
        self.port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
        if self.port == 0:
            raise RuntimeError(f"could not bind {settings.grpc_host}:{settings.grpc_port}")
        if self._bus is not None:
            # A reachable broker is connected to (stream created) before the port opens, as
            # a service on a healthy cluster always did; one that is away costs at most
            # this grace, then the service serves without it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._bus.wait_connected(), BUS_GRACE_SECONDS)
        await server.start()

        if self._db is not None and self._bus is not None:
            relay = OutboxRelay(self._db, self._bus, meter_provider=self.meter_provider)
            self._spawn(relay.run, "outbox-relay")
        for subscription in runtime.subscriptions:
            consumer = Consumer(
                runtime.db, runtime.bus, subscription, meter_provider=self.meter_provider
            )
            self._spawn(consumer.run, f"consumer {subscription.durable}")
        for task in runtime.background:
            self._spawn(task, getattr(task, "__name__", "background"))
        # SERVING means "this process answers calls": neither dependency's outage is a
        # reason to take the replica out of rotation, since a database outage is answered
        # per call with UNAVAILABLE (retryable) and events wait in the outbox while the bus is
        # away. Readiness is therefore the gRPC port being open and the services registered;
        # an orchestrator that restarted replicas for a broker outage would only add to it.
        for name in ("", *runtime.service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            extra={"service": self.definition.name, "port": self.port, "services": names},
        )

    def _spawn(self, factory: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        outage = OutageLog(log, "database", every=60.0)

        async def supervised() -> None:
            # A background loop that dies would silently stop events; restart it instead.
            while True:
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    outage.background_failure(
                        error, "background task crashed; restarting", task=name
                    )
                    await asyncio.sleep(1.0)

        self._tasks.append(asyncio.create_task(supervised(), name=name))

    async def stop(self) -> None:
        """Graceful stop: NOT_SERVING first, then stop taking calls and let in-flight ones
        finish within the grace period, then the background work and connections. Every
        step is bounded, so a stuck callback or connection cannot keep the process alive."""
        await self._health.enter_graceful_shutdown()
        runtime = self.runtime
        if runtime is not None:
            for callback in runtime.on_drain:
                await _bounded("drain callback", callback())
        if self.settings.shutdown_delay_seconds:
            await asyncio.sleep(self.settings.shutdown_delay_seconds)
        if self._server is not None:
            grace = self.settings.shutdown_grace_seconds
            await _bounded("server stop", self._server.stop(grace), grace + STEP_TIMEOUT)
        if self._tasks:
            await _bounded("background tasks", _cancel_all(self._tasks))
        if runtime is not None:
            for callback in runtime.on_stop:
                await _bounded("stop callback", callback())
        if self._bus is not None:
            await _bounded("event bus close", self._bus.close())
        if self._db is not None:
            await _bounded("database dispose", self._db.dispose())


#: Seconds any one shutdown step may take before it is abandoned (and logged).
STEP_TIMEOUT = 5.0
#: Seconds a starting service waits for the event bus before it serves without it.
BUS_GRACE_SECONDS = 5.0


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait for them, cancelling again any that is still running.

    One ``cancel()`` is not always enough: on Python 3.11 ``asyncio.wait_for`` loses a
    cancellation that arrives as its inner await completes, and a loop that then goes round
    again would outlive the service (a leaked journey loop kept polling a dropped test
    database)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.2)


async def _bounded(step: str, awaitable: Awaitable[Any], seconds: float = STEP_TIMEOUT) -> None:
    try:
        async with asyncio.timeout(seconds):
            await awaitable
    except TimeoutError:
        log.warning("shutdown step timed out; abandoned", extra={"step": step})
    except Exception:
        log.exception("shutdown step failed", extra={"step": step})


@contextlib.asynccontextmanager
async def running(
    definition: ServiceDefinition[S], settings: S, meter_provider: MeterProvider | None = None
) -> AsyncIterator[ServiceHost[S]]:
    """Run a service in process (for tests and benchmarks) and stop it afterwards."""
    host = ServiceHost(definition, settings, meter_provider)
    try:
        await host.start()
        yield host
    finally:
        await host.stop()


async def _serve_until_signalled(definition: ServiceDefinition[S], settings: S) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host = ServiceHost(definition, settings)
    await host.start()
    await stop.wait()
    log.info("stopping: draining in-flight calls", extra={"service": definition.name})
    await host.stop()


def _worker_main(definition: ServiceDefinition[S], settings: S) -> None:
    _setup_process(settings)
    asyncio.run(_serve_until_signalled(definition, settings))


def _setup_process(settings: ServiceSettings) -> None:
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    configure_telemetry(settings)


async def _migrate(definition: ServiceDefinition[S], settings: S) -> None:
    if definition.migrations is None or not definition.uses_database:
        return
    # Alembic only where migrations run: a server started with migrate_on_start=false (every
    # replica of `make run`'s cluster shape, production's pods) never imports it.
    from tenpo.kit import migrations

    await migrations.upgrade(definition.migrations, settings.database_url)


async def _seed(definition: ServiceDefinition[S], settings: S) -> None:
    if definition.seed is None:
        return
    db = Database(settings.database_url, pool_size=2, max_overflow=2)
    try:
        runtime = Runtime(settings, grpc.aio.server(), db, None)
        await definition.seed(runtime)
    finally:
        await db.dispose()


def serve(definition: ServiceDefinition[S], settings: S) -> None:
    """Serve until SIGTERM/SIGINT, in one process or several sharing the port."""
    if settings.migrate_on_start:
        asyncio.run(_migrate(definition, settings))
    if settings.workers == 1:
        asyncio.run(_serve_until_signalled(definition, settings))
        return
    if settings.grpc_port == 0:
        raise SystemExit("several workers need a fixed grpc_port to share")
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker_main, args=(definition, settings), name=f"worker-{i}")
        for i in range(settings.workers)
    ]
    for worker in workers:
        worker.start()

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in workers:
        worker.join()
    failed = [w.name for w in workers if w.exitcode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    if failed:
        raise SystemExit(f"workers failed: {', '.join(failed)}")


def main(definition: ServiceDefinition[S], argv: list[str] | None = None) -> None:
    """Command line of every service: ``serve`` (default), ``migrate``, ``seed`` and the
    service's own commands."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{definition.name}")
    commands = ["serve", "migrate", "seed", *definition.extra_cli]
    parser.add_argument("command", nargs="?", default="serve", choices=commands)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    parsed = parser.parse_args(sys.argv[1:] if argv is None else argv)
    settings = definition.settings_type()
    if not settings.service_name or settings.service_name == "tenpo":
        settings = settings.model_copy(update={"service_name": definition.name})
    _setup_process(settings)
    if parsed.command == "serve":
        serve(definition, settings)
    elif parsed.command == "migrate":
        asyncio.run(_migrate(definition, settings))
    elif parsed.command == "seed":
        asyncio.run(_migrate(definition, settings))
        asyncio.run(_seed(definition, settings))
    else:
        sys.exit(asyncio.run(definition.extra_cli[parsed.command](settings, parsed.args)))
