"""Store card persistence: the generic ledger store of ``store/ledger.py`` over the card
tables (the card row, its append-only ledger, payment holds), and the top-up that keeps the
balance within the card's maximum."""

from __future__ import annotations

from services.customer.domain import store_card as sd
from services.customer.models import store_card_entries, store_card_holds, store_cards
from services.customer.store.ledger import LedgerStore, LedgerTables, LedgerTypes, values_of


class StoreCardStore(LedgerStore[sd.Card, sd.Entry]):
    tables = LedgerTables(store_cards, store_card_entries, store_card_holds, "amount")
    types = LedgerTypes(sd.Card, sd.Entry, sd.StoreCardEntryKind, sd.StoreCardHoldState)

    async def top_up(self, entry: sd.Entry, maximum: int) -> sd.Card | None:
        """Insert the TOP_UP entry and add it to the balance in one statement, if the
        balance stays within ``maximum``; None (nothing written) if it would not."""
        return await self.append(
            values_of(entry), condition=store_cards.c.balance + entry.amount <= maximum
        )

    async def pay(self, entry: sd.Entry, hold_amount: int) -> sd.Card:
        """The PAYMENT entry of a held amount: balance and reserved fall together."""
        card = await self.append(values_of(entry), reserved_delta=-hold_amount)
        assert card is not None  # unconditional: the card row exists (locked)
        return card
