"""Customer use cases: staff users (the first one bootstrapped, the demo one seeded)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from services.customer import domain as d
from services.customer.store.staff import StaffStore
from services.customer.usecases.common import UseCase
from tenpo.kit.errors import FailedPrecondition


class Staff(UseCase):
    """Staff users. There is no API to create them: staff with ``clients:write`` create
    devices, and the first staff user comes from the one-off bootstrap command."""

    async def ensure_staff(
        self, email: str, display_name: str, password: str, scopes: Sequence[str]
    ) -> None:
        """Seed helper (development): the named staff user with this password and scopes."""
        normalized = d.normalize_email(email)
        password_hash = await self.passwords.hash(password)
        async with self.db.unit_of_work() as uow:
            await StaffStore(uow.session).upsert(normalized, display_name, password_hash, scopes)
            await uow.commit()

    async def bootstrap_staff(
        self,
        email: str,
        display_name: str,
        password: str,
        scopes: Sequence[str],
        *,
        even_if_staff_exist: bool = False,
    ) -> uuid.UUID:
        """Create the first staff user of a deployment; refused (STAFF_EXISTS) once any
        staff user exists, unless ``even_if_staff_exist`` (then this one is created, or
        reset and re-enabled: a way back in when every staff password is lost)."""
        unique_scopes = tuple(dict.fromkeys(s.strip() for s in scopes))
        normalized = d.validate_staff(email, display_name, password, unique_scopes)
        password_hash = await self.passwords.hash(password)
        async with self.db.unit_of_work() as uow:
            store = StaffStore(uow.session)
            await store.lock_table()
            if not even_if_staff_exist and await store.count() > 0:
                raise FailedPrecondition(
                    "a staff user exists already; bootstrap runs once", reason="STAFF_EXISTS"
                )
            staff_id = await store.upsert(
                normalized, display_name.strip(), password_hash, unique_scopes
            )
            await uow.commit()
        return staff_id
