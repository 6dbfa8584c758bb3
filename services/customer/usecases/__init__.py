"""Customer use cases: one module per aggregate, one method per command or query; each owns
its transaction. ``bundle.build_use_cases`` wires them together."""
