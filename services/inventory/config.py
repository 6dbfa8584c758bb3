"""Inventory settings (environment prefix INVENTORY_, shared TENPO_ fallback)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tenpo.kit.settings import ServiceSettings


class InventorySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INVENTORY_")

    service_name: str = "inventory"
    grpc_port: int = 50052
    #: Refuse stock for SKUs the catalog has not announced. Turn off for imports that
    #: arrive before the catalog's events.
    require_known_skus: bool = True
    #: Durable consumer name of the catalog projection (one per deployment).
    catalog_consumer: str = "inventory-known-skus"
    #: How often expired reservations are swept, and how many per transaction.
    expiry_interval_seconds: float = Field(default=1.0, gt=0)
    expiry_batch_size: int = Field(default=200, ge=1)
    #: Concurrent reservation transactions per process; a free one takes every waiting
    #: request, and they overlap (one commits while the next waits for the rows).
    reserve_batch_workers: int = Field(default=2, ge=1, le=64)
    reserve_max_batch: int = Field(default=500, ge=1)
    #: Availability streams end after this long; clients reconnect.
    watch_max_seconds: float = Field(default=900.0, gt=0)
