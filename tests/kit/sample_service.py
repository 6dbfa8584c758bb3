"""A tiny service on the kit, used by the kit's own tests (in process and as a subprocess)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
import sqlalchemy as sa
from google.protobuf import empty_pb2, struct_pb2, wrappers_pb2
from pydantic_settings import SettingsConfigDict

from tenpo.kit.auth import current_principal
from tenpo.kit.errors import FieldViolation, InvalidArgument, NotFound, Unavailable
from tenpo.kit.idempotency import idempotent
from tenpo.kit.server import Runtime, ServiceDefinition, main
from tenpo.kit.settings import ServiceSettings

SERVICE = "tenpo.kittest.v1.SampleService"

sample_metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    sample_metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
)


class SampleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SAMPLE_")


def _unary(behaviour: Any, request_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString,
    )


async def build(runtime: Runtime[SampleSettings]) -> None:
    async def echo(request: wrappers_pb2.StringValue, context: Any) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value=request.value)

    async def fail(request: wrappers_pb2.StringValue, context: Any) -> empty_pb2.Empty:
        if request.value == "missing":
            raise NotFound("no such note", reason="NOTE_NOT_FOUND", metadata={"id": "42"})
        raise InvalidArgument(
            "quantity must be positive",
            reason="QUANTITY_INVALID",
            field_violations=[FieldViolation("lines[2].quantity", "must be at least 1")],
        )

    async def boom(request: empty_pb2.Empty, context: Any) -> empty_pb2.Empty:
        raise RuntimeError("secret connection string postgres://user:pw@db")

    async def slow(request: wrappers_pb2.DoubleValue, context: Any) -> wrappers_pb2.DoubleValue:
        await asyncio.sleep(request.value)
        return wrappers_pb2.DoubleValue(value=request.value)

    async def who_am_i(request: empty_pb2.Empty, context: Any) -> struct_pb2.Struct:
        principal = current_principal()
        result = struct_pb2.Struct()
        result.update(
            {
                "kind": principal.kind.value,
                "subject": principal.subject,
                "channel": float(principal.channel),
                "store": principal.store_id or "",
                "scopes": sorted(principal.scopes),
            }
        )
        return result

    async def add_note(request: struct_pb2.Struct, context: Any) -> wrappers_pb2.Int64Value:
        # One effect per request_id, however many times (and however concurrently) it is sent.
        async with runtime.db.unit_of_work() as uow:

            async def insert() -> wrappers_pb2.Int64Value:
                await asyncio.sleep(0.05)  # widen the race window on purpose
                row = await uow.session.execute(
                    sa.insert(notes).values(text=request["text"]).returning(notes.c.id)
                )
                return wrappers_pb2.Int64Value(value=row.scalar_one())

            response = await idempotent(
                uow,
                scope="AddNote",
                request_id=request["request_id"],
                request=_without_request_id(request),
                response_type=wrappers_pb2.Int64Value,
                action=insert,
            )
            await uow.commit()
            return response

    async def count_notes(request: empty_pb2.Empty, context: Any) -> wrappers_pb2.Int64Value:
        async with runtime.db.unit_of_work() as uow:
            found = await uow.session.scalar(sa.select(sa.func.count()).select_from(notes))
            return wrappers_pb2.Int64Value(value=found or 0)

    async def count_notes_driver(request: empty_pb2.Empty, context: Any) -> wrappers_pb2.Int64Value:
        async with runtime.db.driver_unit_of_work() as uow:
            found = await uow.connection.fetchval("SELECT count(*) FROM notes")
            return wrappers_pb2.Int64Value(value=found)

    async def announce(request: wrappers_pb2.StringValue, context: Any) -> empty_pb2.Empty:
        # A state change others care about: an event through the outbox.
        async with runtime.db.unit_of_work() as uow:
            await uow.session.execute(sa.insert(notes).values(text=request.value))
            uow.add_event(request, service="sample")
            await uow.commit()
        return empty_pb2.Empty()

    async def pid(request: empty_pb2.Empty, context: Any) -> wrappers_pb2.Int64Value:
        return wrappers_pb2.Int64Value(value=os.getpid())

    attempts: dict[str, int] = {}

    async def flaky(request: wrappers_pb2.StringValue, context: Any) -> wrappers_pb2.Int64Value:
        # Fails twice per key with UNAVAILABLE, then answers with the attempt number.
        attempts[request.value] = attempts.get(request.value, 0) + 1
        if attempts[request.value] <= 2:
            raise Unavailable("warming up", reason="WARMING_UP")
        return wrappers_pb2.Int64Value(value=attempts[request.value])

    async def count(request: wrappers_pb2.StringValue, context: Any) -> AsyncIterator[Any]:
        for i in range(int(request.value or "3")):
            yield wrappers_pb2.Int64Value(value=i)

    handlers = {
        "Echo": _unary(echo, wrappers_pb2.StringValue, wrappers_pb2.StringValue),
        "Fail": _unary(fail, wrappers_pb2.StringValue, empty_pb2.Empty),
        "Boom": _unary(boom, empty_pb2.Empty, empty_pb2.Empty),
        "Slow": _unary(slow, wrappers_pb2.DoubleValue, wrappers_pb2.DoubleValue),
        "WhoAmI": _unary(who_am_i, empty_pb2.Empty, struct_pb2.Struct),
        "AddNote": _unary(add_note, struct_pb2.Struct, wrappers_pb2.Int64Value),
        "Pid": _unary(pid, empty_pb2.Empty, wrappers_pb2.Int64Value),
        "Announce": _unary(announce, wrappers_pb2.StringValue, empty_pb2.Empty),
        "CountNotes": _unary(count_notes, empty_pb2.Empty, wrappers_pb2.Int64Value),
        "CountNotesDriver": _unary(count_notes_driver, empty_pb2.Empty, wrappers_pb2.Int64Value),
        "Flaky": _unary(flaky, wrappers_pb2.StringValue, wrappers_pb2.Int64Value),
        "Count": grpc.unary_stream_rpc_method_handler(
            count,
            request_deserializer=wrappers_pb2.StringValue.FromString,
            response_serializer=wrappers_pb2.Int64Value.SerializeToString,
        ),
    }
    generic = grpc.method_handlers_generic_handler(SERVICE, handlers)
    runtime.add_servicer(
        lambda _s, server: server.add_generic_rpc_handlers((generic,)), None, SERVICE
    )


def _without_request_id(request: struct_pb2.Struct) -> struct_pb2.Struct:
    copy = struct_pb2.Struct()
    copy.CopyFrom(request)
    del copy["request_id"]
    return copy


definition = ServiceDefinition(
    name="sample",
    settings_type=SampleSettings,
    build=build,
    uses_database=False,
    uses_events=False,
)

if __name__ == "__main__":
    main(definition)
