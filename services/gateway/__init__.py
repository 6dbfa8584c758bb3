"""API gateway: HTTP/JSON and gRPC ingress in front of the Tenpo services."""
