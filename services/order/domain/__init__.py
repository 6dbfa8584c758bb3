"""Order domain: orders, the checkout saga, payments. Pure Python, no I/O."""
