"""Catalog use cases: one method per command or query; each owns its transaction.

``Catalog`` (products, relations, attributes, search, import) holds ``categories`` and
``prices``; ``caches`` are the in-process caches every read shares."""

from services.catalog.usecases.access import Viewer, require_writer
from services.catalog.usecases.catalog import Catalog

__all__ = ["Catalog", "Viewer", "require_writer"]
