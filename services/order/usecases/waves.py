"""Pick-wave use case: a store's work still to pick, in waves (domain.waves)."""

from __future__ import annotations

from services.order.domain.waves import MAX_GROUPED, TO_PICK, PickWave, pick_waves, wave_settings
from services.order.store.fulfilments import FulfilmentStore
from services.order.usecases.fulfilments import Fulfilments
from tenpo.kit.auth import Principal


class PickWaves:
    def __init__(self, fulfilments: Fulfilments) -> None:
        self.fulfilments = fulfilments

    async def list(
        self, principal: Principal, store_id: str, minutes: int, max_size: int
    ) -> tuple[list[PickWave], bool]:
        """The store's waves (earliest first) and whether more work was left out."""
        width, size = wave_settings(minutes, max_size)
        # The same rule as the store's work list: its own devices and staff only.
        self.fulfilments.require_store_reader(principal, store_id)
        async with self.fulfilments.db.unit_of_work() as uow:
            found = await FulfilmentStore(uow.session).open_at_store(
                store_id, None, MAX_GROUPED + 1, statuses=TO_PICK
            )
        truncated = len(found) > MAX_GROUPED
        items = [f for f, _, _ in found[:MAX_GROUPED]]
        return pick_waves(items, width, size), truncated
