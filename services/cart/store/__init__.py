"""Cart persistence: repositories over an AsyncSession, rows ⇄ domain objects."""
