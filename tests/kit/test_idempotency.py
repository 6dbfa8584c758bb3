"""Idempotency against real PostgreSQL: ``idempotent()`` around an action, and the
one-statement form (``claim_keys`` / ``stored_answers``) hot paths use; the kit's own SQL
fragments number their parameters after the caller's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import sqlalchemy as sa
from google.protobuf import wrappers_pb2

from tenpo.kit.auth import Principal, PrincipalKind, enter_principal, exit_principal
from tenpo.kit.db import KIT_METADATA, Database, idempotency_table, outbox_fragment
from tenpo.kit.errors import InvalidArgument
from tenpo.kit.idempotency import (
    KeyClaim,
    check_request_id,
    claim_keys,
    idempotency_key,
    idempotent,
    request_fingerprint,
    stored_answers,
)

notes_metadata = sa.MetaData()
notes = sa.Table(
    "idempotency_test_notes",
    notes_metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
)
ALICE = Principal(kind=PrincipalKind.CUSTOMER, subject="alice")
BOB = Principal(kind=PrincipalKind.CUSTOMER, subject="bob")


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=30, max_overflow=10)
    async with database.engine.begin() as connection:
        await connection.run_sync(KIT_METADATA.create_all)
        await connection.run_sync(notes_metadata.create_all)
    try:
        yield database
    finally:
        await database.dispose()


def numbers(sql: str) -> list[int]:
    return sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})


def test_the_kits_fragments_number_their_parameters_after_the_callers() -> None:
    sql, args = outbox_fragment(([1], [2], [3], [4], [5], [6]), after=19)
    assert numbers(sql) == [20, 21, 22, 23, 24, 25]
    assert args == [[1], [2], [3], [4], [5], [6]]
    with pytest.raises(ValueError, match="six"):
        outbox_fragment(([1], [2]), after=0)
    claim = KeyClaim("k", b"f", wrappers_pb2.StringValue(value="v"))
    sql, args = claim_keys("Scope", [claim], after=25)
    assert numbers(sql) == [26, 27, 28, 29]
    assert args == [["Scope"], ["k"], [b"f"], [claim.response.SerializeToString()]]


def test_a_request_id_is_bounded() -> None:
    assert check_request_id("r" * 128) == "r" * 128
    with pytest.raises(InvalidArgument) as caught:
        check_request_id("r" * 129)
    assert caught.value.reason == "REQUEST_ID_INVALID"
    assert [v.field for v in caught.value.field_violations] == ["request_id"]


@pytest.mark.parametrize("request_id", ["a\x00b", "line\nbreak", "\x7f", "tab\there"])
def test_a_request_id_with_control_characters_is_invalid(request_id: str) -> None:
    # Found from outside: a NUL reached PostgreSQL in ReserveStock's key lookup, and the
    # reservation batcher answered UNAVAILABLE, so a client retried a request that could
    # never succeed.
    with pytest.raises(InvalidArgument) as caught:
        check_request_id(request_id)
    assert caught.value.reason == "REQUEST_ID_INVALID"
    assert [v.field for v in caught.value.field_violations] == ["request_id"]


def test_a_printable_request_id_is_kept_as_is() -> None:
    assert check_request_id("order-42/ä 日本") == "order-42/ä 日本"


async def claim(db: Database, key: str, body: str, answer: str, hold: asyncio.Event) -> bool:
    """Claim ``key`` in one statement, keep the transaction open until ``hold`` is set,
    commit; True when this call won the key."""
    fingerprint = request_fingerprint(wrappers_pb2.StringValue(value=body))
    sql, args = claim_keys(
        "Hot",
        [KeyClaim(key, fingerprint, wrappers_pb2.StringValue(value=answer))],
        after=0,
    )
    async with db.driver_unit_of_work() as uow:
        won = await uow.connection.fetch(sql, *args)
        await hold.wait()
        await uow.commit()
    return bool(won)


async def test_a_hot_statement_claims_a_key_once_and_later_calls_find_the_answer(
    db: Database,
) -> None:
    key = idempotency_key("req-1")
    open_ = asyncio.Event()
    first = asyncio.create_task(claim(db, key, "body", "first", open_))
    await asyncio.sleep(0.2)  # the first holds the key uncommitted
    rivals = [asyncio.create_task(claim(db, key, "body", f"rival-{n}", open_)) for n in range(5)]
    await asyncio.sleep(0.2)
    assert not any(r.done() for r in rivals)  # they wait for the first to end
    open_.set()
    assert await first is True
    assert await asyncio.gather(*rivals) == [False] * 5
    async with db.driver_unit_of_work() as uow:
        found = await stored_answers(uow.connection, "Hot", [key, idempotency_key("none")])
    assert list(found) == [key]
    same = request_fingerprint(wrappers_pb2.StringValue(value="body"))
    assert found[key].answer(same, wrappers_pb2.StringValue).value == "first"
    other = request_fingerprint(wrappers_pb2.StringValue(value="another body"))
    with pytest.raises(InvalidArgument) as caught:
        found[key].answer(other, wrappers_pb2.StringValue)
    assert caught.value.reason == "REQUEST_ID_REUSED"


async def test_a_claim_rolled_back_leaves_the_key_free(db: Database) -> None:
    key = idempotency_key("req-2")
    sql, args = claim_keys(
        "Hot", [KeyClaim(key, b"x", wrappers_pb2.StringValue(value="lost"))], after=0
    )
    async with db.driver_unit_of_work() as uow:
        assert await uow.connection.fetch(sql, *args)
        # no commit: the unit of work rolls back
    assert await claim(db, key, "body", "kept", _set()) is True
    async with db.unit_of_work() as uow:
        stored = (
            await uow.session.execute(
                sa.select(idempotency_table.c.response).where(idempotency_table.c.scope == "Hot")
            )
        ).scalars()
        assert [wrappers_pb2.StringValue.FromString(r).value for r in stored] == ["kept"]


def _set() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


async def add_note(
    db: Database, text: str, request_id: str, principal: Principal, *, via_call: bool = False
) -> int | str:
    """One AddNote-like call; the note id, or the error's reason. ``via_call``: the caller
    comes from the call context (as the guard sets it) rather than an argument."""
    async with db.unit_of_work() as uow:

        async def insert() -> wrappers_pb2.Int64Value:
            row = await uow.session.execute(
                sa.insert(notes).values(text=text).returning(notes.c.id)
            )
            return wrappers_pb2.Int64Value(value=row.scalar_one())

        token = enter_principal(principal) if via_call else None
        try:
            response = await idempotent(
                uow,
                scope="AddNote",
                request_id=request_id,
                request=wrappers_pb2.StringValue(value=text),
                response_type=wrappers_pb2.Int64Value,
                action=insert,
                principal=None if via_call else principal,
            )
        except InvalidArgument as error:
            return error.reason
        finally:
            if token is not None:
                exit_principal(token)
        await uow.commit()
        return response.value


async def texts(db: Database) -> list[str]:
    async with db.unit_of_work() as uow:
        rows = await uow.session.execute(sa.select(notes.c.text).order_by(notes.c.id))
        return list(rows.scalars())


async def test_request_ids_are_bound_to_the_caller_under_concurrency(db: Database) -> None:
    answers = await asyncio.gather(
        *(add_note(db, "milk", "r-1", ALICE) for _ in range(10)),
        *(add_note(db, "milk", "r-1", BOB, via_call=True) for _ in range(10)),
    )
    alices, bobs = set(answers[:10]), set(answers[10:])
    # Bob replaying Alice's body and request_id gets his own note, never Alice's.
    assert len(alices) == 1 and len(bobs) == 1 and alices != bobs
    assert await texts(db) == ["milk", "milk"]
    assert idempotency_key("r-1", ALICE) != idempotency_key("r-1", BOB)
    # The same subject as another kind of principal is another caller too.
    staff_alice = Principal(kind=PrincipalKind.STAFF, subject="alice")
    assert idempotency_key("r-1", staff_alice) != idempotency_key("r-1", ALICE)


async def test_identical_retries_racing_another_body_get_the_winners_answer(
    db: Database,
) -> None:
    calls = [
        add_note(db, "bread" if n % 2 else "milk", "r-2", ALICE, via_call=bool(n % 3))
        for n in range(30)
    ]
    answers = await asyncio.gather(*calls)
    (winner,) = await texts(db)
    for n, answer in enumerate(answers):
        body = "bread" if n % 2 else "milk"
        if body == winner:
            assert isinstance(answer, int)
        else:
            assert answer == "REQUEST_ID_REUSED"
    assert len({a for a in answers if isinstance(a, int)}) == 1


async def test_a_conditional_claim_on_its_own_connection_keeps_no_key_when_the_condition_fails(
    db: Database,
) -> None:
    """``claim_keys(when=…)`` on ``driver_connection`` (each statement commits on its own):
    a claim whose condition does not hold stores nothing, so the key stays free."""
    answer = wrappers_pb2.StringValue(value="v")

    async def claim_when(key: str, condition: str, flag: bool) -> bool:
        sql, args = claim_keys("When", [KeyClaim(key, b"f", answer)], after=1, when=condition)
        async with db.driver_connection() as connection:
            assert not connection.is_in_transaction()
            return bool(await connection.fetch(sql, flag, *args))

    assert await claim_when("k-false", "$1::boolean", False) is False
    assert await claim_when("k-true", "$1::boolean", True) is True
    assert await claim_when("k-true", "$1::boolean", True) is False  # taken already
    async with db.driver_connection() as connection:
        found = await stored_answers(connection, "When", ["k-false", "k-true"])
    assert list(found) == ["k-true"]
    assert found["k-true"].answer(b"f", wrappers_pb2.StringValue).value == "v"
