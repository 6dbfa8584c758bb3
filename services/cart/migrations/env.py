"""Alembic environment of the cart service."""

from services.cart.models import metadata
from tenpo.kit.migrations import run_env

run_env(metadata)
