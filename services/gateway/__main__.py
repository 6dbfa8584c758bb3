"""Entry point: `python -m services.gateway` serves the gRPC ingress and HTTP/JSON API."""

import asyncio

from services.gateway.app import definition
from services.gateway.config import GatewaySettings
from tenpo.kit.server import main


def _choose_event_loop() -> None:
    # uvloop measured faster for the HTTP side (see the bench) and grpc.aio runs on it; the
    # kit's asyncio.run picks the policy up.
    if GatewaySettings().event_loop != "uvloop":
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    _choose_event_loop()
    main(definition)
