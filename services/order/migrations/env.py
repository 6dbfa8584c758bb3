"""Alembic environment of the order service."""

from services.order.models import metadata
from tenpo.kit.migrations import run_env

run_env(metadata)
