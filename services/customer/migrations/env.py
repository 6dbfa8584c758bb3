"""Alembic environment of the customer service."""

from services.customer.models import metadata
from tenpo.kit.migrations import run_env

run_env(metadata)
