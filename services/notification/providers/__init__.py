"""Channel providers behind ports: SMTP e-mail, an SMS provider's REST API, Web Push, and
development sinks."""
