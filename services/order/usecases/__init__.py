"""Order use cases, one module per aggregate."""
