"""Catalog settings (environment prefix CATALOG_, shared TENPO_ fallback)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from tenpo.kit.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_")

    service_name: str = "catalog"
    grpc_port: int = 50051
    #: Seconds a cached product may be served before it is re-read (invalidation by the
    #: service's own writes and events normally comes first).
    product_cache_ttl_seconds: float = 60.0
    #: Seconds attribute definitions and category titles (read by every render and search)
    #: may be served before they are re-read; this process's own writes drop them at once.
    reference_cache_ttl_seconds: float = 30.0
