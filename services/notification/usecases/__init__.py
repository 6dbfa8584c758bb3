"""Notification use cases, one module per aggregate: templates, messages (compose and
delivery), recipients (contacts, consent, suppressions), journeys, tracking."""
