"""Timeline domain: in-store interactions and projected entries. No I/O."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from . import invalid

INTERACTIONS_SCOPE = "interactions:write"
#: Anonymous interactions a device recorded at most this long before a hand-off to it was
#: started are hers when the hand-off completes (she tried things on, then signed in); older
#: ones, and any from before the device's previous hand-off, belong to someone else.
ANONYMOUS_LINK_WINDOW = timedelta(minutes=30)
MAX_SKU = 64
MAX_SIZE = 16
SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: An RFID EPC in hex: 96, 128 or 256 bits (SGTIN-96 is the common one on apparel).
ITEM_TAG_PATTERN = re.compile(r"^(?:[0-9a-f]{24}|[0-9a-f]{32}|[0-9a-f]{64})$")


class InteractionKind(IntEnum):
    """Mirrors tenpo.customer.v1.InteractionKind."""

    SHELF_SCAN = 1
    MIRROR_TRY_ON = 2
    KIOSK_SESSION = 3
    LOYALTY = 4
    ORDER = 5
    CART = 6
    MESSAGE = 7


#: What devices may record; LOYALTY entries are projected by this service only.
DEVICE_KINDS = frozenset(
    {InteractionKind.SHELF_SCAN, InteractionKind.MIRROR_TRY_ON, InteractionKind.KIOSK_SESSION}
)


@dataclass(frozen=True)
class Interaction:
    id: uuid.UUID
    customer_id: uuid.UUID | None
    kind: InteractionKind
    sku: str
    size: str
    channel: int
    store_id: str | None
    device_id: str | None
    summary: str
    created_at: datetime
    #: What a projected entry is about (order, cart or message id); empty for devices.
    reference: str = ""
    #: The RFID EPC of the physical item a device read (lower-case hex), or empty.
    item_tag: str = ""


def check_device_interaction(kind: InteractionKind, sku: str, size: str) -> tuple[str, str]:
    """A device's interaction, cleaned: shelf scans and try-ons name a SKU; a try-on names
    its size; a kiosk session needs neither."""
    if kind not in DEVICE_KINDS:
        raise invalid("interaction.kind", "a device interaction kind", "INTERACTION_KIND_INVALID")
    sku, size = sku.strip(), size.strip()
    if kind is not InteractionKind.KIOSK_SESSION and not sku:
        raise invalid("interaction.sku", "is required for this kind", "FIELD_REQUIRED")
    if sku and not SKU_PATTERN.match(sku):
        raise invalid("interaction.sku", f"a SKU (letters, digits, . _ -; at most {MAX_SKU})")
    if kind is InteractionKind.MIRROR_TRY_ON and not size:
        raise invalid("interaction.size", "is required for a try-on", "FIELD_REQUIRED")
    if len(size) > MAX_SIZE:
        raise invalid("interaction.size", f"at most {MAX_SIZE} characters")
    return sku, size


def check_item_tag(kind: InteractionKind, item_tag: str) -> str:
    """The item's RFID EPC, lower-case; only shelves and mirrors read items' tags."""
    tag = item_tag.strip().lower()
    if not tag:
        return ""
    if kind is InteractionKind.KIOSK_SESSION:
        raise invalid(
            "interaction.item_tag",
            "only a shelf scan or a try-on reads an item's tag",
            "ITEM_TAG_NOT_ALLOWED",
        )
    if not ITEM_TAG_PATTERN.match(tag):
        raise invalid(
            "interaction.item_tag", "an RFID EPC: 96, 128 or 256 bits of hex", "ITEM_TAG_INVALID"
        )
    return tag
