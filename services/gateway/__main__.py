"""Entry point: `python -m services.gateway` serves the gRPC ingress and HTTP/JSON API."""

from services.gateway.app import definition
from tenpo.kit.server import main


def _use_uvloop() -> None:
    # uvloop made the HTTP side markedly faster than the default loop (see the bench), and
    # grpc.aio runs on it; asyncio.run in the kit's bootstrap picks the policy up.
    try:
        import uvloop
    except ImportError:
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    _use_uvloop()
    main(definition)
