"""Customer use cases: staff users (the first one bootstrapped, the demo one seeded)."""

from __future__ import annotations

from collections.abc import Sequence

from services.customer import domain as d
from services.customer.store.staff import StaffStore
from services.customer.usecases.common import (
    UseCase,
)


class Staff(UseCase):
    """Staff users."""

    async def ensure_staff(
        self, email: str, display_name: str, password: str, scopes: Sequence[str]
    ) -> None:
        normalized = d.normalize_email(email)
        password_hash = await self.passwords.hash(password)
        async with self.db.unit_of_work() as uow:
            await StaffStore(uow.session).upsert(normalized, display_name, password_hash, scopes)
            await uow.commit()
