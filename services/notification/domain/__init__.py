"""Notification domain: pure rules of templates, SMS segments, sending rules and journeys."""
