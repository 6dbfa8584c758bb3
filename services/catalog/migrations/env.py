"""Alembic environment of the catalog service."""

from services.catalog.models import metadata
from tenpo.kit.migrations import run_env

run_env(metadata)
