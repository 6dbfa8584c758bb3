"""Cart use cases, one module per aggregate: each call decides and owns its transaction."""
