"""products.search_title: the folded titles search ranks by

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 16:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The domain's normalize_text in SQL (NFKC, lower case, katakana → hiragana, spaces
# collapsed), so existing rows are backfilled in one statement; every later save writes the
# domain's own folding. The ranges are the domain's _KATAKANA_START.._KATAKANA_END.
_KATAKANA = "".join(chr(c) for c in range(ord("ァ"), ord("ヶ") + 1))
_HIRAGANA = "".join(chr(c - (ord("ァ") - ord("ぁ"))) for c in range(ord("ァ"), ord("ヶ") + 1))


def upgrade() -> None:
    op.add_column(
        "products", sa.Column("search_title", sa.Text(), server_default="", nullable=False)
    )
    op.get_bind().execute(
        sa.text(
            """
            UPDATE products SET search_title = btrim(regexp_replace(translate(lower(normalize(
                (SELECT coalesce(string_agg(value, ' '), '') FROM jsonb_each_text(titles)),
                NFKC)), :katakana, :hiragana), '\\s+', ' ', 'g'))
            """
        ),
        {"katakana": _KATAKANA, "hiragana": _HIRAGANA},
    )


def downgrade() -> None:
    op.drop_column("products", "search_title")
