"""OpenTelemetry metrics every service and the gateway record: calls per RPC and per HTTP
route (one duration histogram each: its count is the request rate, its status attribute
the errors) and database query durations. Names and attributes follow the OpenTelemetry
semantic conventions, so a collector's Prometheus exporter turns them into the usual
``rpc_server_duration_milliseconds_bucket{rpc_method=..., rpc_grpc_status_code=...}``.

Instruments come from a meter provider given explicitly (tests pass one with an in-memory
reader) or the global one ``tenpo.kit.telemetry`` installs; without an exporter the
global provider has no reader and recording costs next to nothing."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import sqlalchemy as sa
from grpc.aio import ServicerContext
from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from tenpo.kit.handlers import StreamBehaviour, UnaryBehaviour, wrap_handler

METER = "tenpo.kit"
#: gRPC server calls, milliseconds (semantic conventions: rpc.server.duration).
RPC_SERVER_DURATION = "rpc.server.duration"
#: HTTP requests the gateway answered, seconds (http.server.request.duration).
HTTP_SERVER_DURATION = "http.server.request.duration"
#: Pool connections by ``state`` (idle, used), from the SQLAlchemy instrumentation.
DB_CONNECTIONS_USAGE = "db.client.connections.usage"
#: SQL statements, seconds (db.client.operation.duration).
DB_OPERATION_DURATION = "db.client.operation.duration"
#: Calls a server failed, per ``rpc.service``, ``rpc.method`` and ``error.type``: the
#: error's stable reason (``DATABASE_UNAVAILABLE``, ``INSUFFICIENT_STOCK``) or ``INTERNAL``.
RPC_SERVER_ERRORS = "tenpo.rpc.server.errors"

#: Bucket bounds of the histograms in seconds (the SDK's default bounds, 0 to 10,000, are
#: for milliseconds: in seconds every call would land in the first bucket). The HTTP
#: semantic conventions' bounds, with finer ones below for SQL statements and coarser
#: ones above for the outbox's delay.
SECONDS_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
    300.0,
)


def _meter(provider: MeterProvider | None) -> metrics.Meter:
    return (provider or metrics.get_meter_provider()).get_meter(METER)


def _status_of(context: ServicerContext, error: BaseException | None) -> str:
    """The call's final status name: what the handler set or aborted with; UNKNOWN for
    an exception gRPC itself turns into UNKNOWN; CANCELLED when the client went away."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None:
        return "OK"
    return "CANCELLED" if isinstance(error, (GeneratorExit, asyncio.CancelledError)) else "UNKNOWN"


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Records ``rpc.server.duration`` for every call the server answers, with
    ``rpc.system``, ``rpc.service``, ``rpc.method`` and ``rpc.grpc.status_code`` (the
    status name, e.g. ``INVALID_ARGUMENT``)."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._duration = _meter(meter_provider).create_histogram(
            RPC_SERVER_DURATION, unit="ms", description="Duration of inbound gRPC calls"
        )
        # Wrapped once per method: the continuation hands back the same handler each call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        handler: grpc.RpcMethodHandler | None = await continuation(handler_call_details)
        if handler is None:  # no such method: gRPC answers UNIMPLEMENTED itself
            return handler  # type: ignore[return-value]
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        if len(self._wrapped) < 10_000:  # bounded: method names come from clients
            self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service, _, name = method.lstrip("/").rpartition("/")
        base = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        duration = self._duration

        def record(started: float, context: ServicerContext, error: BaseException | None) -> None:
            status = _status_of(context, error)
            elapsed = (time.perf_counter() - started) * 1000
            duration.record(elapsed, {**base, "rpc.grpc.status_code": status})

        def unary(inner: UnaryBehaviour, request_streaming: bool) -> UnaryBehaviour:
            async def measured(request: Any, context: ServicerContext) -> Any:
                started = time.perf_counter()
                error: BaseException | None = None
                try:
                    return await inner(request, context)
                except BaseException as caught:
                    error = caught
                    raise
                finally:
                    record(started, context, error)

            return measured

        def stream(inner: StreamBehaviour, request_streaming: bool) -> StreamBehaviour:
            async def measured(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
                started = time.perf_counter()
                error: BaseException | None = None
                try:
                    async for response in inner(request, context):
                        yield response
                except BaseException as caught:
                    error = caught
                    raise
                finally:
                    record(started, context, error)

            return measured

        return wrap_handler(handler, unary=unary, stream=stream)


class HttpMetrics:
    """``http.server.request.duration`` per route template (never the concrete path:
    paths hold ids and e-mail addresses), method and status."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._duration = _meter(meter_provider).create_histogram(
            HTTP_SERVER_DURATION,
            unit="s",
            description="Duration of HTTP requests",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        self._duration.record(
            seconds,
            {
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status,
            },
        )


class RpcErrors:
    """``tenpo.rpc.server.errors``: every failed call by its reason, which the status code
    alone does not tell (UNAVAILABLE is a database outage or another service's). Reasons are
    the code's own constants, so the series stay few."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        self._errors = _meter(meter_provider).create_counter(
            RPC_SERVER_ERRORS, unit="{call}", description="Failed calls by error reason"
        )

    def record(self, method: str, reason: str) -> None:
        service, _, name = method.lstrip("/").rpartition("/")
        self._errors.add(
            1,
            {
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                "error.type": reason[:64],
            },
        )


class BusinessCounter:
    """A counter of something the business cares about (orders placed, messages sent),
    declared once here so its name, unit and meaning are the same in every service and on
    the dashboard. Use cases count through their unit of work, ``uow.count(ORDERS_PLACED,
    channel="WEB")``, which adds at commit: a rolled-back transaction counts nothing.
    Attribute values must come from small fixed sets (enum names, reasons), never ids."""

    def __init__(self, name: str, unit: str, description: str) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self._instruments: dict[int, metrics.Counter] = {}

    def add(
        self,
        amount: int = 1,
        attributes: dict[str, str] | None = None,
        *,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        provider = meter_provider or metrics.get_meter_provider()
        counter = self._instruments.get(id(provider))
        if counter is None:
            # One instrument per provider (the global one, or a test's in-memory one),
            # created on first use: nothing happens at import time.
            counter = _meter(provider).create_counter(
                self.name, unit=self.unit, description=self.description
            )
            self._instruments[id(provider)] = counter
        counter.add(amount, {k: v[:64] for k, v in (attributes or {}).items()})

    def __repr__(self) -> str:
        return f"BusinessCounter({self.name!r})"


#: Orders that reached PLACED, by ``channel`` (the touchpoint, e.g. ``WEB``, ``KIOSK``).
ORDERS_PLACED = BusinessCounter("tenpo.orders.placed", "{order}", "Orders placed")
#: Checkouts that ended failed (compensated), by ``reason`` (``INSUFFICIENT_STOCK``, ...).
CHECKOUTS_FAILED = BusinessCounter("tenpo.checkouts.failed", "{checkout}", "Checkouts failed")
#: Reservations refused because the stock was not there, by ``reason``.
RESERVATIONS_REFUSED = BusinessCounter(
    "tenpo.reservations.refused", "{reservation}", "Reservations refused for stock"
)
#: Messages handed to a provider, by ``channel`` (``EMAIL``, ``SMS``, ``PUSH``).
MESSAGES_SENT = BusinessCounter("tenpo.messages.sent", "{message}", "Messages sent")
#: Loyalty points credited to customers' balances (EARN entries), by ``channel``.
POINTS_EARNED = BusinessCounter("tenpo.loyalty.points_earned", "{point}", "Points earned")
BUSINESS_COUNTERS = (
    ORDERS_PLACED,
    CHECKOUTS_FAILED,
    RESERVATIONS_REFUSED,
    MESSAGES_SENT,
    POINTS_EARNED,
)


def touchpoint(channel: int) -> str:
    """A touchpoint channel as a counter attribute: ``WEB``, ``KIOSK``, ``UNSPECIFIED``."""
    from tenpo.common.v1 import common_pb2

    try:
        return common_pb2.Channel.Name(channel).removeprefix("CHANNEL_")  # type: ignore[arg-type]
    except ValueError:
        return "UNKNOWN"


def instrument_engine(
    engine: sa.engine.Engine, database: str, meter_provider: MeterProvider | None = None
) -> None:
    """SQL spans and connection pool usage (``db.client.connections.usage``, idle/used)
    from OpenTelemetry's SQLAlchemy instrumentation, plus ``db.client.operation.duration``
    per operation (``SELECT``, ``INSERT``, ``BEGIN``, ...; never the statement: it holds
    values), whether the statement went through SQLAlchemy or straight to asyncpg."""
    # The instrumentation's engine hooks, used directly: SQLAlchemyInstrumentor is a
    # process-wide singleton that instruments once (a second Database would get nothing),
    # patches create_engine globally, and refuses SQLAlchemy 2.1 by its declared range
    # although the event API it hooks is unchanged (tests/kit/test_metrics.py proves it).
    from opentelemetry import trace
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    meter = _meter(meter_provider)
    usage = meter.create_up_down_counter(
        DB_CONNECTIONS_USAGE,
        unit="connections",
        description="Pool connections by state (idle, used)",
    )
    EngineTracer(trace.get_tracer("opentelemetry.instrumentation.sqlalchemy"), engine, usage)
    duration = meter.create_histogram(
        DB_OPERATION_DURATION,
        unit="s",
        description="Duration of SQL statements",
        explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
    )
    base = {"db.system": "postgresql", "db.namespace": database}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info.setdefault("tenpo_started", []).append(time.perf_counter())

    def after(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        started = conn.info.get("tenpo_started")
        if not started:
            return
        elapsed = time.perf_counter() - started.pop()
        if executemany:
            return  # asyncpg runs it unprepared and its query logger (below) records it
        duration.record(elapsed, {**base, "db.operation.name": operation_name(statement)})

    def failed(context: Any) -> None:
        connection = context.connection
        if connection is not None and connection.info.get("tenpo_started"):
            connection.info["tenpo_started"].pop()

    def driver_statement(record: Any) -> None:
        attributes = {**base, "db.operation.name": operation_name(record.query)}
        if record.exception is not None:
            attributes["error.type"] = type(record.exception).__name__
        duration.record(record.elapsed, attributes)

    def connected(dbapi_connection: Any, connection_record: Any) -> None:
        # The statements SQLAlchemy's cursor events never see: those run straight on the
        # asyncpg connection (Database.driver_connection, DriverUnitOfWork, the outbox
        # relay) and every transaction's BEGIN and COMMIT. asyncpg logs all its unprepared
        # executions, never the prepared statements SQLAlchemy runs, so nothing counts twice.
        dbapi_connection.driver_connection.add_query_logger(driver_statement)

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    sa.event.listen(engine, "handle_error", failed)
    sa.event.listen(engine, "connect", connected)


def operation_name(statement: str) -> str:
    """The statement's first keyword (``SELECT``, ``WITH``, ``BEGIN``): never its text, which
    holds values."""
    keyword = _KEYWORD.match(statement)
    return keyword.group(1).upper()[:16] if keyword else ""


_KEYWORD = re.compile(r"\s*([A-Za-z]+)")
