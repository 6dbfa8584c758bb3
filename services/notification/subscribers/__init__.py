"""Event consumers of the notification service."""
