"""Cart and promotion domain: pure rules, no I/O (carts, pricing and tax, promotions)."""
