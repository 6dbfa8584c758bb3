"""Catalog (PIM) service: products, variants, categories, prices, relations, search."""
