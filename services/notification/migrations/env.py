"""Alembic environment of the notification service."""

from services.notification.models import metadata
from tenpo.kit.migrations import run_env

run_env(metadata)
