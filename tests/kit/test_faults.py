"""Which exceptions are not bugs: data exceptions and unreachable dependencies."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from tenpo.kit.errors import InvalidArgument, NotFound, Unavailable
from tenpo.kit.faults import expected_failure


def _wrapped(inner: BaseException) -> BaseException:
    """As SQLAlchemy delivers a driver error: DBAPIError(orig=adapter error) from it."""
    try:
        try:
            raise inner
        except BaseException as error:
            raise sa_exc.DBAPIError("SELECT 1", None, error) from error
    except sa_exc.DBAPIError as outer:
        return outer


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.InterfaceError("connection is closed"),
        sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"),
    ],
)
def test_database_connection_failures_are_unavailable(error: BaseException) -> None:
    for raised in (error, _wrapped(error)):
        found = expected_failure(raised)
        assert isinstance(found, Unavailable)
        assert found.reason == "DATABASE_UNAVAILABLE"
        assert "administrator" not in str(found.metadata)  # names, never messages


def test_a_refused_connection_outside_the_database_is_a_dependency() -> None:
    found = expected_failure(ConnectionRefusedError(111, "Connect call failed"))
    assert isinstance(found, Unavailable)
    assert found.reason == "DEPENDENCY_UNAVAILABLE"


def test_a_value_postgres_cannot_store_is_the_callers_mistake() -> None:
    found = expected_failure(_wrapped(asyncpg.CharacterNotInRepertoireError("NUL")))
    assert isinstance(found, InvalidArgument)
    assert found.reason == "VALUE_NOT_STORABLE"


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("a bug"),
        TimeoutError(),  # a handler's own timeout is no dependency's failure
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        NotFound("gone", reason="GONE"),
    ],
)
def test_bugs_and_domain_errors_are_left_alone(error: BaseException) -> None:
    assert expected_failure(error) is None
