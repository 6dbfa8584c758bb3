"""Inventory use cases: transfers — units sent from one location and received at another."""

from __future__ import annotations

import uuid

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.inventory import domain as d
from services.inventory.store import StockStore, TransferStore, movement_row
from services.inventory.usecases.access import actor_of, require_writer
from services.inventory.usecases.common import (
    Context,
    announce,
    atp_of,
    require_known,
    require_location,
)
from tenpo.kit.auth import Principal
from tenpo.kit.errors import NotFound
from tenpo.kit.idempotency import idempotent


class Transfers:
    def __init__(self, context: Context) -> None:
        self.context = context
        self.db = context.db

    async def send(
        self,
        principal: Principal,
        *,
        sku: str,
        from_location_id: str,
        to_location_id: str,
        quantity: int,
        note: str,
        request_id: str,
        request: Message,
    ) -> d.Transfer:
        """The units leave the source's on hand now (only promisable ones may go) and are
        in transit at the target until received."""
        require_writer(principal)
        planned = d.new_transfer(sku, from_location_id, to_location_id, quantity)
        locations = await self.context.locations.all()
        async with self.db.unit_of_work() as uow:
            stock = StockStore(uow.session)
            transfers = TransferStore(uow.session)

            async def send() -> wrappers_pb2.StringValue:
                await require_location(uow, planned.from_location_id)
                await require_location(uow, planned.to_location_id)
                await require_known(self.context, uow, [planned.sku])
                await stock.ensure([planned.target_key])
                locked = await stock.lock([planned.source_key, planned.target_key])
                source = locked.get(planned.source_key) or d.StockLevel(
                    planned.sku, planned.from_location_id
                )
                target = locked[planned.target_key]
                written = await stock.write(
                    [
                        source.take_out(planned.quantity),
                        target.expect_in_transit(planned.quantity),
                    ]
                )
                await stock.add_movements(
                    [
                        movement_row(
                            written[planned.source_key],
                            -planned.quantity,
                            d.MovementReason.TRANSFER_OUT,
                            request_id=request_id,
                            actor=actor_of(principal),
                            reference=f"transfers/{planned.id}",
                            note=note,
                        )
                    ]
                )
                await transfers.insert(planned)
                announce(uow, locations, atp_of(locked), written.values(), self.context.clock())
                return wrappers_pb2.StringValue(value=str(planned.id))

            result = await idempotent(
                uow,
                scope="TransferStock",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=send,
            )
            transfer = await transfers.get(uuid.UUID(result.value))
            await uow.commit()
        assert transfer is not None
        return transfer

    async def receive(
        self, principal: Principal, transfer_id: uuid.UUID, request_id: str
    ) -> d.Transfer:
        require_writer(principal)
        locations = await self.context.locations.all()
        async with self.db.unit_of_work() as uow:
            transfers = TransferStore(uow.session)
            stock = StockStore(uow.session)
            transfer = await transfers.get(transfer_id, for_update=True)
            if transfer is None:
                raise NotFound("no such transfer", reason="TRANSFER_NOT_FOUND")
            if transfer.received:
                return transfer  # receiving twice is receiving once
            key = transfer.target_key
            level = (await stock.lock([key]))[key]
            written = (await stock.write([level.receive_in_transit(transfer.quantity)]))[key]
            await stock.add_movements(
                [
                    movement_row(
                        written,
                        transfer.quantity,
                        d.MovementReason.TRANSFER_IN,
                        request_id=request_id,
                        actor=actor_of(principal),
                        reference=f"transfers/{transfer_id}",
                    )
                ]
            )
            received = await transfers.mark_received(transfer_id)
            announce(
                uow,
                locations,
                {key: level.available_to_promise},
                [written],
                self.context.clock(),
            )
            await uow.commit()
        return received
