"""A message queued by another replica wakes this one's sender at its commit (PostgreSQL
NOTIFY), not at the next poll."""

from __future__ import annotations

import uuid

from services.notification.domain.templates import Channel
from tenpo.kit.db import Database
from tests.services.notification.conftest import Harness, eventually


async def test_a_commit_elsewhere_wakes_the_sender(harness: Harness) -> None:
    # Polls so rare that only the wake-up can deliver within the test's patience.
    async with harness.start(delivery_poll_seconds=600, journey_poll_seconds=600) as (host, _):
        assert host.runtime is not None
        messages = host.runtime.parts["messages"]
        customer = harness.directory.add()
        other_replica = Database(harness.database_url, pool_size=1, max_overflow=0)
        try:
            async with other_replica.unit_of_work() as uow:
                await messages.compose(
                    uow,
                    customer_id=uuid.UUID(customer),
                    template_key="welcome",
                    channel=Channel.EMAIL,
                    data={},
                    dedupe_key=f"test:{uuid.uuid4()}",
                )
                await uow.commit()
        finally:
            await other_replica.dispose()

        async def mailed() -> None:
            assert harness.catcher.to(harness.directory.contacts[customer].email)

        await eventually(mailed, timeout=20)
