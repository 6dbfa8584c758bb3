"""Customer use cases: one sign-in attempt under the lockout counters of its e-mail.

The lock is set by failures only, so concurrent correct sign-ins never lock an account
(they used to: every attempt was counted as a failure before its password was checked, and
the fifth of five concurrent correct sign-ins found the lock the other four had set).
Parallel guesses still cannot pass the lock: an attempt checks its password outside the
counter's row lock only while, were it and every attempt in flight wrong, the failures would
stay below the threshold (``domain.may_check_outside_lock``); beyond that, attempts are
decided one at a time under the row lock, and a failure counts those still in flight as
failures too. So the slow hash holds the row (and a connection) only when an e-mail is
near its threshold, which is when its attempts must queue anyway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from services.customer import domain as d
from services.customer.store.throttle import Attempts, ThrottleStore
from services.customer.usecases.common import UseCase, invalid_credentials
from tenpo.kit.db import UnitOfWork
from tenpo.kit.errors import ResourceExhausted

Subject = TypeVar("Subject")
Result = TypeVar("Result")

#: Reads, in the attempt's transaction, the stored hash to check (None: check against the
#: decoy, and fail) and the subject it belongs to.
Lookup = Callable[[UnitOfWork], Awaitable[tuple[str | None, Subject | None]]]
#: Runs, in one transaction with forgiving the failures, what a correct password earns.
Succeed = Callable[[UnitOfWork, Subject, str], Awaitable[Result]]


class SignInLockout(UseCase):
    async def attempt(
        self,
        key: bytes,
        password: str,
        lookup: Lookup[Subject],
        succeed: Succeed[Subject, Result],
    ) -> Result:
        """Check ``password`` for the subject ``lookup`` finds, counted on ``key``: a wrong
        one is INVALID_CREDENTIALS (and may lock), a locked key SIGN_IN_LOCKED."""
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            throttle = ThrottleStore(uow.session)
            attempts = await throttle.lock_row(key)
            self._refuse_if_locked(attempts, now)
            in_flight = d.live_in_flight(attempts.in_flight, attempts.in_flight_at, now)
            if not d.may_check_outside_lock(
                attempts.failures, in_flight, threshold=self.policy.lockout_threshold
            ):
                # Near the threshold: decided under the row lock, so the next attempt sees
                # this one's outcome. Stale in-flight counts are dropped on the way.
                found, stored = await self._check(uow, lookup, password)
                return await self._settle(
                    uow, throttle, key, (attempts, in_flight), found, stored, succeed
                )
            await throttle.admit(key, in_flight, now)
            await uow.commit()
        try:
            async with self.db.unit_of_work() as uow:
                found, stored = await self._check(uow, lookup, password)
        except BaseException:
            await self._withdraw(key)
            raise
        async with self.db.unit_of_work() as uow:
            throttle = ThrottleStore(uow.session)
            counted = await self._others_in_flight(throttle, key)
            return await self._settle(uow, throttle, key, counted, found, stored, succeed)

    async def _check(
        self, uow: UnitOfWork, lookup: Lookup[Subject], password: str
    ) -> tuple[Subject | None, str | None]:
        """The subject if ``password`` is hers (and her stored hash). The hash is always
        computed, against a decoy for an unknown address, so the answer's cost never tells
        whether an account exists."""
        stored, subject = await lookup(uow)
        correct = await self.passwords.verify(stored, password)
        return (subject if correct else None), stored

    async def _settle(
        self,
        uow: UnitOfWork,
        throttle: ThrottleStore,
        key: bytes,
        counted: tuple[Attempts, int],
        found: Subject | None,
        stored: str | None,
        succeed: Succeed[Subject, Result],
    ) -> Result:
        """Count the outcome on the locked row (``counted``: its counters and the attempts
        still in flight besides this one) and commit: a failure may lock; a success
        forgives the failures and runs ``succeed`` in the same transaction."""
        attempts, in_flight = counted
        if found is None:
            await self._fail(throttle, key, attempts, in_flight)
            await uow.commit()
            raise invalid_credentials()
        await throttle.succeeded(key, in_flight)
        result = await succeed(uow, found, stored or "")
        await uow.commit()
        return result

    async def _others_in_flight(self, throttle: ThrottleStore, key: bytes) -> tuple[Attempts, int]:
        """Locks the row; its counters and the attempts in flight besides this one."""
        attempts = await throttle.lock_row(key)
        live = d.live_in_flight(attempts.in_flight, attempts.in_flight_at, self.clock())
        return attempts, max(live - 1, 0)

    async def _fail(
        self, throttle: ThrottleStore, key: bytes, attempts: Attempts, in_flight: int
    ) -> None:
        now = self.clock()
        failures = attempts.failures + 1
        lock = d.lockout_seconds(
            d.lockout_exposure(failures, in_flight),
            threshold=self.policy.lockout_threshold,
            base=self.policy.lockout_base_seconds,
            maximum=self.policy.lockout_max_seconds,
        )
        locked_until = now + timedelta(seconds=lock) if lock else None
        if attempts.locked_until is not None and (
            locked_until is None or attempts.locked_until > locked_until
        ):
            locked_until = attempts.locked_until  # a failure never shortens a lock
        await throttle.save(key, failures, locked_until, now, in_flight=in_flight)

    async def _withdraw(self, key: bytes) -> None:
        """An attempt that ended without an answer (cancelled, a database error) leaves the
        in-flight count; if this fails too, the count goes stale on its own."""
        async with self.db.unit_of_work() as uow:
            throttle = ThrottleStore(uow.session)
            _, others = await self._others_in_flight(throttle, key)
            await throttle.set_in_flight(key, others)
            await uow.commit()

    @staticmethod
    def _refuse_if_locked(attempts: Attempts, now: datetime) -> None:
        if attempts.locked_until is not None and attempts.locked_until > now:
            retry_after = max(1, int((attempts.locked_until - now).total_seconds() + 0.999))
            raise ResourceExhausted(
                f"too many failed sign-ins; locked, retry after {retry_after} s",
                reason="SIGN_IN_LOCKED",
                metadata={"retry_after_seconds": str(retry_after)},
            )
