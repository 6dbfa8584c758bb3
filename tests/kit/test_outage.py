"""Background work during an outage: the outage is one WARNING without a traceback, a bug
is an ERROR with one."""

from __future__ import annotations

import logging

import pytest

from tenpo.kit.outage import OutageLog


class AdminShutdown(Exception):
    """Stands for asyncpg's error when PostgreSQL shuts down (its SQLSTATE is what counts)."""

    sqlstate = "57P01"


def test_a_database_outage_in_background_work_is_one_warning_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = OutageLog(logging.getLogger("test.outage"), "database")
    with caplog.at_level(logging.DEBUG, logger="test.outage"):
        for _ in range(5):
            outage.background_failure(AdminShutdown("terminating connection"), "sweep failed")
        outage.recovered()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["database unavailable"]
    assert not any(r.exc_info for r in caplog.records)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
    assert caplog.records[-1].getMessage() == "database available again"


def test_a_bug_in_background_work_is_an_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = OutageLog(logging.getLogger("test.outage"), "database")
    with caplog.at_level(logging.DEBUG, logger="test.outage"):
        outage.background_failure(KeyError("lines"), "sweep failed", task="expiry")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.getMessage() == "sweep failed"
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert not outage.down
