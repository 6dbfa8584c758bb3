"""Inventory settings (environment prefix INVENTORY_, shared TENPO_ fallback)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.inventory.domain import CustomerLimits
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
    #: Concurrent reservation transactions per process; each coalesces every waiting
    #: request for SKUs no other one is busy with.
    reserve_batch_workers: int = Field(default=2, ge=1, le=64)
    reserve_max_batch: int = Field(default=500, ge=1)
    #: Under load (requests already waiting when a worker's batch ends) the next batch may
    #: fill up to this many requests, waiting at most the linger; an idle service never waits.
    reserve_batch_target: int = Field(default=64, ge=1)
    reserve_batch_linger_seconds: float = Field(default=0.02, ge=0, le=0.1)
    #: What a customer may hold by itself (its own ReserveStock; staff and services such as
    #: the order service are not capped): units per line, how long (counted from creation,
    #: so extending cannot renew it), and how many unexpired reservations at once.
    customer_reservation_max_quantity: int = Field(default=10, ge=1, le=1_000_000)
    customer_reservation_max_ttl_seconds: int = Field(default=3600, ge=60, le=14 * 86_400)
    customer_reservation_max_active: int = Field(default=5, ge=1, le=1000)
    #: Availability streams end after this long; clients reconnect.
    watch_max_seconds: float = Field(default=900.0, gt=0)

    def customer_limits(self) -> CustomerLimits:
        return CustomerLimits(
            max_quantity_per_line=self.customer_reservation_max_quantity,
            max_ttl=timedelta(seconds=self.customer_reservation_max_ttl_seconds),
            max_active=self.customer_reservation_max_active,
        )
