"""Tenpo's shared service kit: what every service stands on (settings, gRPC bootstrap,
persistence, events, auth, errors, idempotency, pagination)."""
