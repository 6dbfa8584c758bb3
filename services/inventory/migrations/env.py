"""Alembic environment of the inventory service."""

from services.inventory.models import metadata
from tenpo.kit.migrations import run_env

run_env(metadata)
