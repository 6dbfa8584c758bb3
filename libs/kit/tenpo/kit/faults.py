"""Failures that are not the service's bug, recognised in whatever exception carries them.

The guard asks ``expected_failure`` before calling an exception INTERNAL: a value PostgreSQL
cannot store is the caller's mistake (INVALID_ARGUMENT), and a database that cannot be
reached right now — restarting, stopped, refusing connections, a pool with no connection to
spare — is UNAVAILABLE, which clients retry with backoff. Errors arrive wrapped: SQLAlchemy's
DBAPIError around its asyncpg adapter's error around asyncpg's, so the chain is walked."""

from __future__ import annotations

import socket
from collections.abc import Iterator

from tenpo.kit.errors import DomainError, InvalidArgument, Unavailable

#: SQLSTATEs of a server that is going away or will not take the connection: class 08
#: (connection exception) and these, whatever the asyncpg class raised for them.
_UNAVAILABLE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: the server is stopping (a restart)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up or shutting down
        "53300",  # too_many_connections
    }
)
#: Exceptions of a pooled connection that died under us (asyncpg names them only in text).
_CLOSED_MESSAGES = ("connection is closed", "connection was closed", "underlying connection")


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cause: BaseException | None = error
    # SQLAlchemy's DBAPIError → adapter error → asyncpg error → OSError, at most.
    while cause is not None and id(cause) not in seen and len(seen) < 8:
        seen.add(id(cause))
        yield cause
        cause = getattr(cause, "orig", None) or cause.__cause__ or cause.__context__


def expected_failure(error: BaseException) -> DomainError | None:
    """The DomainError that ``error`` stands for, or None for a genuine bug."""
    for cause in _chain(error):
        if isinstance(cause, DomainError):
            return None  # raised on purpose; the guard reports it as it is
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str):
            if sqlstate.startswith("22"):
                # PostgreSQL's "data exception" class (a NUL character in text, a number
                # out of range): the request carried a value the database cannot store.
                # Services validate what they can; this catches the rest.
                return InvalidArgument(
                    "a value in the request cannot be stored (for example a NUL character)",
                    reason="VALUE_NOT_STORABLE",
                    metadata={"sqlstate": sqlstate},
                )
            if sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES:
                return database_unavailable(sqlstate)
        if _is_database_connection_failure(cause):
            return database_unavailable(type(cause).__name__)
        if _is_connect_failure(cause):
            # Raised bare by whatever was connecting: asyncpg's connect is not wrapped, so
            # its frames tell a database from another dependency.
            if _raised_in(cause, "asyncpg"):
                return database_unavailable(type(cause).__name__)
            return Unavailable(
                "a dependency is unavailable; retry with backoff",
                reason="DEPENDENCY_UNAVAILABLE",
                metadata={"cause": type(cause).__name__},
            )
    return None


def database_unavailable(cause: str) -> Unavailable:
    """UNAVAILABLE ``DATABASE_UNAVAILABLE``; ``cause`` is an exception name or SQLSTATE,
    never a message (those name hosts and users)."""
    return Unavailable(
        "the database is unavailable; retry with backoff",
        reason="DATABASE_UNAVAILABLE",
        metadata={"cause": cause},
    )


def _is_database_connection_failure(error: BaseException) -> bool:
    # Imported here: the kit's modules that never touch a database need neither library.
    import asyncpg
    from sqlalchemy import exc as sa_exc

    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True  # SQLAlchemy's own verdict: the connection is gone
    if isinstance(error, sa_exc.TimeoutError):
        return True  # the pool had no connection to give within its timeout
    if isinstance(error, asyncpg.PostgresConnectionError):
        return True
    if isinstance(error, asyncpg.InterfaceError | sa_exc.InterfaceError):
        return any(text in str(error) for text in _CLOSED_MESSAGES)
    return False


def _is_connect_failure(error: BaseException) -> bool:
    """Refused, reset, unreachable, unknown host; asyncio's "Multiple exceptions: …" when
    every address of a host failed is a bare OSError without an errno. Not TimeoutError
    (an OSError too): a handler's own timeout is no dependency's failure."""
    if isinstance(error, ConnectionError | socket.gaierror):
        return True
    return type(error) is OSError and str(error).startswith(("Multiple exceptions", "[Errno"))


def _raised_in(error: BaseException, package: str) -> bool:
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__", "").startswith(package):
            return True
        traceback = traceback.tb_next
    return False
