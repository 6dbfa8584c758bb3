"""Cart changes on the raw asyncpg connection: the hot path of every line and cart change.

A change is two statements: one read (the cart, its lines and the request_id's stored
answer, from one snapshot) and one write that commits on its own. The write is a
compare-and-set on the version the read saw: it locks the cart row, and only if the version
has not moved does it claim the request_id, update the cart and write the lines that
changed; otherwise it changes nothing and the caller reads again. SQLAlchemy's per-statement
cost and the BEGIN/COMMIT round trips are what this path saves (see the README's
"Performance").

The lines of a cart at one version never change (every change bumps the version, the etag),
so this process keeps the carts it last read or wrote (``KnownLines``): a read names the
version it knows, and the statement sends (and this side decodes) the lines only when the
cart has moved past it. A change may even start from the known cart without reading it
(``KnownLines.cart``): the write's compare-and-set covers the version and ``priced_at`` (the
one column that price events change without a new version), so a cart moved on elsewhere
is caught there and read again."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from services.cart.domain.carts import Cart, LineItem
from services.cart.models import cart_lines, carts
from services.cart.store.carts import _cart, _fulfillment_json, _line
from tenpo.kit.cache import LRUCache, bounded_cache
from tenpo.kit.idempotency import KeyClaim, StoredAnswer, claim_keys

_CART_COLUMNS = [column.name for column in carts.c]
_LINE_COLUMNS = [column.name for column in cart_lines.c if column.name != "cart_id"]

_READ = f"""
SELECT {", ".join(f"c.{name}" for name in _CART_COLUMNS)},
       {", ".join(f"l.{name} AS l_{name}" for name in _LINE_COLUMNS)},
       k.request_hash AS key_hash, k.response AS key_response
FROM carts c
LEFT JOIN cart_lines l ON l.cart_id = c.id AND c.version <> $4
LEFT JOIN idempotency_keys k ON k.scope = $2 AND k.request_id = $3
WHERE c.id = $1
ORDER BY l.position
"""  # noqa: S608 (column names from the models only)

_LOCK = "SELECT version, priced_at FROM carts WHERE id = $1 FOR UPDATE"

#: The cart columns a change writes (never the owner, status, creation or abandonment,
#: which changes do not touch). ``priced_at`` is written only when the change repriced every
#: line: a price event may have cleared it meanwhile without a new version.
_UPDATE = """
UPDATE carts SET
    version = $3, channel = $4, store_id = $5, fulfillment = $6::jsonb, codes = $7::text[],
    loyalty_points = $8, contact_email = $9, priced_channel = $10,
    priced_at = CASE WHEN $11::boolean THEN $12::timestamptz ELSE carts.priced_at END,
    availability_checked_at = $13, updated_at = $14, last_activity_at = $15
WHERE carts.id = $1 AND carts.version = $2
  AND EXISTS (
      SELECT 1 FROM locked
      WHERE locked.version = $2 AND locked.priced_at IS NOT DISTINCT FROM $35
  )
"""

_LINE_UPDATES = ", ".join(
    f"{name} = excluded.{name}" for name in _LINE_COLUMNS if name not in ("id", "created_at")
)

_WRITE_LINES = f"""
gone AS (
    DELETE FROM cart_lines
    WHERE cart_id = $1 AND id = ANY($16::uuid[]) AND EXISTS (SELECT 1 FROM cart)
),
written AS (
    INSERT INTO cart_lines (cart_id, {", ".join(_LINE_COLUMNS)})
    SELECT $1, l.id, l.position, l.sku, l.quantity, l.product_id, l.title, l.image_url,
           l.unit_price, l.regular_price, l.tax_rate,
           ARRAY(SELECT jsonb_array_elements_text(l.category_ids::jsonb)),
           l.channel, l.store_id, l.offered, l.previous_unit_price, l.availability,
           l.available_quantity, l.created_at
    FROM unnest($17::uuid[], $18::int[], $19::text[], $20::int[], $21::text[], $22::text[],
                $23::text[], $24::bigint[], $25::bigint[], $26::smallint[], $27::text[],
                $28::smallint[], $29::text[], $30::boolean[], $31::bigint[], $32::smallint[],
                $33::bigint[], $34::timestamptz[])
         AS l(id, position, sku, quantity, product_id, title, image_url, unit_price,
              regular_price, tax_rate, category_ids, channel, store_id, offered,
              previous_unit_price, availability, available_quantity, created_at)
    WHERE EXISTS (SELECT 1 FROM cart)
    ON CONFLICT (id) DO UPDATE SET {_LINE_UPDATES}
)
SELECT (SELECT version FROM locked) AS locked_version, EXISTS (SELECT 1 FROM cart) AS written
"""  # noqa: S608 (column names from the models only)

#: The statement's own parameters; the key claim's follow them.
_PARAMETERS = 35


#: The key is claimed only while the cart is locked at the version (and reprice mark) the
#: change was made on.
_VERSION_HELD = (
    "EXISTS (SELECT 1 FROM locked"
    " WHERE locked.version = $2 AND locked.priced_at IS NOT DISTINCT FROM $35)"
)
_CART = f"{_UPDATE} RETURNING carts.id"
_CLAIMED_CART = f"{_UPDATE} AND EXISTS (SELECT 1 FROM claimed) RETURNING carts.id"  # noqa: S608


@lru_cache(maxsize=4)
def _write_sql(claims: bool) -> str:
    if not claims:
        return f"WITH locked AS ({_LOCK}),\ncart AS ({_CART}),\n{_WRITE_LINES}"
    claim_sql, _ = claim_keys("", [], after=_PARAMETERS, when=_VERSION_HELD)
    return (
        f"WITH locked AS ({_LOCK}),\nclaimed AS ({claim_sql}),\n"
        f"cart AS ({_CLAIMED_CART}),\n{_WRITE_LINES}"
    )


class Written(enum.Enum):
    WRITTEN = "written"
    #: The cart changed since it was read (or the request_id was claimed meanwhile): read again.
    MOVED = "moved"
    GONE = "gone"


@dataclass(frozen=True)
class Read:
    cart: Cart | None
    #: The request_id's stored answer, if a call with it was applied already.
    stored: StoredAnswer | None


@dataclass(frozen=True)
class WritePlan:
    """A change to write: ``cart`` as decided from ``seen`` (the cart as read)."""

    seen: Cart
    cart: Cart
    #: Every line was priced just now (``priced_at`` is written).
    priced: bool
    #: (scope, key) of the request_id, claimed in the same statement.
    claim: tuple[str, KeyClaim] | None


class KnownLines:
    """Carts with their lines as this process last read or wrote them, each at its version;
    bounded by the total number of lines held (least recently used carts leave first).
    Sound because a cart's lines at one version never change: every write of lines (a
    change, a reprice, a merge, a checkout) bumps the version, and replicas that wrote
    meanwhile moved it past the one known here. The rest of the row may be older than the
    database's (a reprice mark, the abandonment mark): a change that starts from it without
    reading is checked by the write's compare-and-set."""

    def __init__(self, max_lines: int) -> None:
        self._carts: LRUCache[uuid.UUID, Cart] | None = (
            bounded_cache(max_lines, getsizeof=lambda known: len(known.lines) + 1)
            if max_lines
            else None
        )

    def get(self, cart_id: uuid.UUID) -> tuple[int, tuple[LineItem, ...]]:
        """(version, lines) known for the cart; version 0 (no cart has it) when none are."""
        known = self.cart(cart_id)
        return (known.version, known.lines) if known is not None else (0, ())

    def cart(self, cart_id: uuid.UUID) -> Cart | None:
        """The cart as last read or written here, if it is still held."""
        return self._carts.get(cart_id) if self._carts is not None else None

    def remember(self, cart: Cart) -> None:
        """Keep ``cart``: call it only with a cart as committed (a cart remembered from a
        write that was rolled back could hide another writer's lines at that version)."""
        if self._carts is None or self.get(cart.id)[0] > cart.version:
            return  # a newer version is known already (a read that raced a write)
        try:
            self._carts[cart.id] = cart
        except ValueError:  # more lines than the whole cache holds: not kept
            self._carts.pop(cart.id, None)


#: A store without a cache of lines (every read sends and decodes them).
NO_KNOWN_LINES = KnownLines(0)


class _Fields:
    """An asyncpg record's columns as attributes (optionally under a prefix), for the
    row ⇄ domain functions the SQLAlchemy store uses too."""

    __slots__ = ("_prefix", "_record")

    def __init__(self, record: Any, prefix: str = "") -> None:
        self._record = record
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        value = self._record[self._prefix + name]
        if name == "fulfillment" and isinstance(value, str):
            return json.loads(value)  # jsonb arrives as text on the raw connection
        return value


class DriverCartStore:
    def __init__(self, connection: Any, known: KnownLines = NO_KNOWN_LINES) -> None:
        self.connection = connection  # asyncpg.Connection
        self.known = known

    async def lock(self, cart_id: uuid.UUID) -> None:
        """Lock the cart row for the rest of the transaction (the fallback after lost races;
        a read after it sees every change committed before)."""
        await self.connection.fetchval(_LOCK, cart_id)

    async def read(self, cart_id: uuid.UUID, scope: str, key: str | None) -> Read:
        """The cart with its lines and the stored answer of ``key``, in one statement; the
        lines come from ``known`` when the cart is still at the version known there."""
        # Taken before the statement: another change may remember a newer version meanwhile,
        # and the statement left out the lines of exactly this one.
        known_version, known_lines = self.known.get(cart_id)
        rows = await self.connection.fetch(_READ, cart_id, scope, key or "", known_version)
        if not rows:
            return Read(None, None)
        first = rows[0]
        if first["version"] == known_version:
            lines = known_lines
        else:
            lines = tuple(_line(_Fields(row, "l_")) for row in rows if row["l_id"] is not None)
        cart = _cart(_Fields(first), lines)
        self.known.remember(cart)
        stored = None
        if first["key_hash"] is not None:
            stored = StoredAnswer(first["key_hash"], first["key_response"] or b"")
        return Read(cart, stored)

    async def write(self, plan: WritePlan) -> Written:
        """Write ``plan.cart`` if the stored cart is still at ``plan.seen``'s version (and
        reprice mark, ``priced_at``): the cart row, the lines that differ from the seen
        ones (upserted), the lines gone (deleted), and the key claim — all or nothing, in
        one statement."""
        seen, cart, priced, claim = plan.seen, plan.cart, plan.priced, plan.claim
        # A line the change kept is the very same object: identity settles it without
        # comparing every field of every line.
        kept_before = seen.lines
        changed = [
            (index, line)
            for index, line in enumerate(cart.lines)
            if index >= len(kept_before)
            or (kept_before[index] is not line and kept_before[index] != line)
        ]
        kept = {line.id for line in cart.lines}
        gone = [line.id for line in seen.lines if line.id not in kept]
        args: list[Any] = [
            cart.id,
            seen.version,
            cart.version,
            cart.channel,
            cart.store_id,
            json.dumps(_fulfillment_json(cart.fulfillment)),
            list(cart.codes),
            cart.loyalty_points,
            cart.contact_email,
            cart.priced_channel,
            priced,
            cart.priced_at,
            cart.availability_checked_at,
            cart.updated_at,
            cart.last_activity_at,
            gone,
            *_line_arrays(changed),
            seen.priced_at,
        ]
        if claim is not None:
            scope, key_claim = claim
            _, claim_args = claim_keys(scope, [key_claim], after=_PARAMETERS, when=_VERSION_HELD)
            args.extend(claim_args)
        row = await self.connection.fetchrow(_write_sql(claim is not None), *args)
        if row["written"]:
            return Written.WRITTEN
        return Written.GONE if row["locked_version"] is None else Written.MOVED


def _line_arrays(lines: Sequence[tuple[int, LineItem]]) -> list[list[Any]]:
    return [
        [line.id for _, line in lines],
        [index for index, _ in lines],
        [line.sku for _, line in lines],
        [line.quantity for _, line in lines],
        [line.product_id for _, line in lines],
        [line.title for _, line in lines],
        [line.image_url for _, line in lines],
        [line.unit_price for _, line in lines],
        [line.regular_price for _, line in lines],
        [line.tax_rate for _, line in lines],
        [json.dumps(sorted(line.category_ids)) for _, line in lines],
        [line.channel for _, line in lines],
        [line.store_id for _, line in lines],
        [line.offered for _, line in lines],
        [line.previous_unit_price for _, line in lines],
        [int(line.availability) for _, line in lines],
        [line.available_quantity for _, line in lines],
        [line.created_at for _, line in lines],
    ]
