"""Customer persistence: one module per aggregate, repositories over the unit of work's
session (rows ⇄ domain objects)."""
