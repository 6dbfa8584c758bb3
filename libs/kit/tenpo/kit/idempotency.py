"""Idempotent mutations: a retried request_id returns the first result; a reused one with
different parameters is rejected.

One meaning for every service, whichever way it writes:

- a key is (scope, caller, request_id): the caller is the call's principal (kind and
  subject), so one caller can never receive another's answer by replaying its request_id;
- the same key with the same parameters (the request without its request_id, see
  ``request_fingerprint``) answers with the stored response, however many retries race;
- the same key with other parameters is ``REQUEST_ID_REUSED`` (INVALID_ARGUMENT);
- a request whose action fails stores nothing, so the key stays free.

``idempotent()`` does this around an action in a SQLAlchemy unit of work. A hot path that
writes in one raw asyncpg statement (inventory's reservations) uses the same table with
``claim_keys`` (a CTE that claims its keys in that statement) and ``stored_answers``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.dialects import postgresql as pg

from tenpo.kit.auth import Principal, current_principal
from tenpo.kit.db import UnitOfWork, idempotency_table
from tenpo.kit.errors import FieldViolation, InvalidArgument

R = TypeVar("R", bound=Message)

MAX_REQUEST_ID_LENGTH = 128
REUSED = "REQUEST_ID_REUSED"


def request_fingerprint(request: Message, request_id_field: str = "request_id") -> bytes:
    """Hash of the request without its request_id: what "the same parameters" means."""
    copy = type(request)()
    copy.CopyFrom(request)
    if request_id_field in copy.DESCRIPTOR.fields_by_name:
        copy.ClearField(request_id_field)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).digest()


def check_request_id(request_id: str) -> str:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise InvalidArgument(
            "request_id is too long",
            reason="REQUEST_ID_INVALID",
            field_violations=[
                FieldViolation("request_id", f"at most {MAX_REQUEST_ID_LENGTH} characters")
            ],
        )
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in request_id):
        # A NUL cannot be stored by PostgreSQL, and no client needs a control character in
        # a key: refuse it here, once, rather than as a database error that some callers
        # (the reservation batcher) can only report as "retry".
        raise InvalidArgument(
            "request_id contains a control character",
            reason="REQUEST_ID_INVALID",
            field_violations=[FieldViolation("request_id", "no control characters")],
        )
    return request_id


def request_id_reused() -> InvalidArgument:
    return InvalidArgument(
        "request_id was already used for a different request",
        reason=REUSED,
        field_violations=[FieldViolation("request_id", "already used with other parameters")],
    )


def idempotency_key(request_id: str, principal: Principal | None = None) -> str:
    """The stored key of ``request_id`` sent by ``principal`` (default: the call's).

    The caller enters as a hash of kind and subject (fixed length, no separator a subject
    could forge), so two callers choosing the same request_id never share a key: customer
    B replaying A's request never receives A's answer."""
    caller = principal or current_principal()
    tag = hashlib.sha256(f"{caller.kind.value}\0{caller.subject}".encode()).hexdigest()[:32]
    return f"{tag}:{request_id}"


async def idempotent(
    uow: UnitOfWork,
    *,
    scope: str,
    request_id: str,
    request: Message,
    response_type: type[R],
    action: Callable[[], Awaitable[R]],
    principal: Principal | None = None,
) -> R:
    """Run ``action`` once per (scope, caller, request_id) inside ``uow``'s transaction.

    The caller is ``principal``, by default the principal of the call being served.
    The key row is inserted first: a concurrent call with the same key blocks on the
    primary key until the first transaction ends, then finds the stored response (or, if
    the first rolled back, runs the action itself). The caller commits ``uow``; the key and
    the action's writes land together or not at all.
    """
    if not request_id:
        return await action()
    key = idempotency_key(check_request_id(request_id), principal)
    fingerprint = request_fingerprint(request)
    claimed = (
        await uow.session.execute(
            pg.insert(idempotency_table)
            .values(scope=scope, request_id=key, request_hash=fingerprint)
            .on_conflict_do_nothing()
            .returning(idempotency_table.c.request_id)
        )
    ).first()
    if claimed is None:
        stored = (
            await uow.session.execute(
                sa.select(idempotency_table.c.request_hash, idempotency_table.c.response).where(
                    idempotency_table.c.scope == scope,
                    idempotency_table.c.request_id == key,
                )
            )
        ).one()
        if stored.request_hash != fingerprint:
            raise request_id_reused()
        return response_type.FromString(stored.response or b"")
    response = await action()
    await uow.session.execute(
        sa.update(idempotency_table)
        .where(
            idempotency_table.c.scope == scope,
            idempotency_table.c.request_id == key,
        )
        .values(response=response.SerializeToString(deterministic=True))
    )
    return response


# ------------------------------------------------------------ one-statement hot paths


@lru_cache(maxsize=64)
def _claim_sql(first: int, when: str | None = None) -> str:
    p = [f"${first + i}" for i in range(4)]
    condition = f"WHERE {when}" if when else ""
    return f"""
INSERT INTO idempotency_keys (scope, request_id, request_hash, response)
SELECT * FROM unnest({p[0]}::text[], {p[1]}::text[], {p[2]}::bytea[], {p[3]}::bytea[])
{condition}
ON CONFLICT DO NOTHING
RETURNING request_id
"""  # noqa: S608 (parameter numbers and the caller's own SQL condition only)


@dataclass(frozen=True)
class KeyClaim:
    """One key to claim in a hot statement, with the response a replay will receive."""

    key: str
    fingerprint: bytes
    response: Message


def claim_keys(
    scope: str, claims: Sequence[KeyClaim], *, after: int, when: str | None = None
) -> tuple[str, list[Any]]:
    """An ``INSERT … RETURNING request_id`` for a CTE of a raw asyncpg statement that has
    ``after`` parameters of its own, with the arguments to append to them. The rows the
    CTE returns are the keys this statement won; a key another transaction holds waits
    for it and is left out, so the statement can write only what it won (and the caller
    roll back and look the rest up with ``stored_answers``).

    ``when`` is an SQL condition of the caller's statement (a constant SQL text, e.g. on
    another CTE): the keys are claimed only if it holds, so a statement that commits on
    its own never keeps a key for a change it did not make."""
    return _claim_sql(after + 1, when), [
        [scope] * len(claims),
        [c.key for c in claims],
        [c.fingerprint for c in claims],
        [c.response.SerializeToString(deterministic=True) for c in claims],
    ]


@dataclass(frozen=True)
class StoredAnswer:
    fingerprint: bytes
    response: bytes

    def answer(self, fingerprint: bytes, response_type: type[R]) -> R:
        """The stored response for a request with ``fingerprint``, or REQUEST_ID_REUSED."""
        if fingerprint != self.fingerprint:
            raise request_id_reused()
        return response_type.FromString(self.response)


async def stored_answers(
    connection: Any, scope: str, keys: Sequence[str]
) -> dict[str, StoredAnswer]:
    """The stored answers of ``keys`` (``idempotency_key``s) on a raw asyncpg connection."""
    if not keys:
        return {}
    rows = await connection.fetch(
        "SELECT request_id, request_hash, response FROM idempotency_keys"
        " WHERE scope = $1 AND request_id = ANY($2::text[])",
        scope,
        list(keys),
    )
    return {r["request_id"]: StoredAnswer(r["request_hash"], r["response"] or b"") for r in rows}
