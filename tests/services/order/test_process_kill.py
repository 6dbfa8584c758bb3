"""A real kill -9 of the order service mid-checkout: the service runs as its own process
(``python -m services.order``, signing in with its client credentials like in production),
shoppers check out against it, it is killed while sagas run, and it is started again.
After the restart every order is either PLACED with its event, its stock committed and its
cart closed, or FAILED with its stock released, its payment voided and its cart open."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.customer.domain import ClientKind
from services.order.app import definition
from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.devtools.keys import DevKeys
from tenpo.devtools.stack import drop_database, ensure_database
from tenpo.kit import migrations
from tenpo.kit.db import Database
from tenpo.kit.grpc_errors import decode_error
from tenpo.order.v1 import events_pb2 as ev
from tenpo.order.v1 import order_service_pb2_grpc
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.conftest import auth_settings
from tests.services.order.conftest import SERVICE_SCOPES, Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SHOPPERS = 30
UNITS = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _order_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "services.order"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


async def _serving(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=120
        )


async def test_a_killed_order_process_leaves_every_order_placed_or_released(
    stack: Stack, postgres_admin_url: str, nats_url: str, dev_keys: DevKeys, tmp_path: Path
) -> None:
    assert stack.customer_host.runtime is not None
    cases = stack.customer_host.runtime.parts["use_cases"]
    client, secret = await cases.clients.ensure_client(
        f"order-service-{uuid.uuid4().hex[:6]}", ClientKind.BACK_OFFICE_TOOL, None, SERVICE_SCOPES
    )
    name = f"test_orderkill_{uuid.uuid4().hex[:10]}"
    url = ensure_database(postgres_admin_url, name, uuid.uuid4().hex)
    db = Database(url, pool_size=2, max_overflow=0)
    try:
        await migrations.upgrade(definition.migrations, url)  # type: ignore[arg-type]
        port = _free_port()
        target = f"127.0.0.1:{port}"
        env = {
            **os.environ,
            "ORDER_ENVIRONMENT": "test",
            "ORDER_DATABASE_URL": url,
            "ORDER_NATS_URL": nats_url,
            "ORDER_GRPC_PORT": str(port),
            "ORDER_MIGRATE_ON_START": "false",
            "ORDER_CART_TARGET": stack.targets["cart"],
            "ORDER_INVENTORY_TARGET": stack.targets["inventory"],
            "ORDER_CUSTOMER_TARGET": stack.targets["customer"],
            "ORDER_SERVICE_CLIENT_ID": client.id,
            "ORDER_SERVICE_CLIENT_SECRET": secret,
            # Generous deadlines (this machine is shared); a short lease so the restarted
            # process takes the dead one's sagas over soon.
            "ORDER_UPSTREAM_TIMEOUT_SECONDS": "20",
            "ORDER_SAGA_LEASE_SECONDS": "3",
            "ORDER_SAGA_RETRY_SECONDS": "1",
            "ORDER_SWEEP_INTERVAL_SECONDS": "0.5",
            "ORDER_LOG_LEVEL": "WARNING",
            "ORDER_CUSTOMER_CONSUMER": f"order-customer-{uuid.uuid4().hex[:8]}",
            **{f"ORDER_{k.upper()}": str(v) for k, v in auth_settings(dev_keys).items()},
        }
        sku = await stack.stock(UNITS)
        customers = [f"c-{uuid.uuid4().hex[:8]}" for _ in range(SHOPPERS)]
        carts = await asyncio.gather(*(stack.cart(c, (sku, 1)) for c in customers))
        requests = [stack.place_request(cart) for cart in carts]

        with _order_process(env, tmp_path / "first.log") as first:
            await _serving(target)
            async with grpc.aio.insecure_channel(target) as channel:
                orders = order_service_pb2_grpc.OrderServiceStub(channel)
                calls = [
                    asyncio.ensure_future(
                        orders.PlaceOrder(request, metadata=stack.customer(customer), timeout=60)
                    )
                    for customer, request in zip(customers, requests, strict=True)
                ]
                # Kill it once sagas are under way (some stock reserved, none finished).
                for _ in range(600):
                    async with db.unit_of_work() as uow:
                        started = await uow.session.scalar(
                            sa.text("SELECT count(*) FROM orders WHERE saga_step >= 3")
                        )
                    if started:
                        break
                    await asyncio.sleep(0.05)
                first.send_signal(signal.SIGKILL)
                first.wait(30)
                first_answers = await asyncio.gather(*calls, return_exceptions=True)
        async with db.unit_of_work() as uow:
            interrupted = await uow.session.scalar(
                sa.text("SELECT count(*) FROM orders WHERE saga_phase <> 'done'")
            )
        assert interrupted, "the kill must land while sagas run"
        assert any(isinstance(answer, grpc.aio.AioRpcError) for answer in first_answers)

        with _order_process(env, tmp_path / "second.log"):
            await _serving(target)
            for _ in range(1200):  # the restarted sweeper finishes or compensates them
                async with db.unit_of_work() as uow:
                    open_sagas = await uow.session.scalar(
                        sa.text("SELECT count(*) FROM orders WHERE saga_phase <> 'done'")
                    )
                if not open_sagas:
                    break
                await asyncio.sleep(0.1)
            assert open_sagas == 0
            # A shopper's retry after the crash learns what became of the checkout.
            async with grpc.aio.insecure_channel(target) as channel:
                orders = order_service_pb2_grpc.OrderServiceStub(channel)
                retried = []
                for customer, request in zip(customers, requests, strict=True):
                    try:
                        answer = await orders.PlaceOrder(
                            request, metadata=stack.customer(customer), timeout=60
                        )
                        retried.append(pb.OrderStatus.Name(answer.order.status))
                    except grpc.aio.AioRpcError as error:
                        retried.append(decode_error(error).reason)

        async with db.unit_of_work() as uow:
            rows = (
                await uow.session.execute(
                    sa.text("SELECT id::text, cart_id, status, payment_state FROM orders")
                )
            ).all()
            payloads = (
                await uow.session.execute(
                    sa.text("SELECT payload FROM outbox WHERE event_type LIKE '%OrderPlaced'")
                )
            ).scalars()
            announced = Counter(ev.OrderPlaced.FromString(p).order_id for p in payloads)
            authorizations = dict(
                (
                    await uow.session.execute(
                        sa.text(
                            "SELECT key, outcome FROM sandbox_payments"
                            " WHERE operation = 'authorize'"
                        )
                    )
                ).all()
            )
            voided = set(
                (
                    await uow.session.execute(
                        sa.text(
                            "SELECT authorization_key FROM sandbox_payments"
                            " WHERE operation = 'void'"
                        )
                    )
                ).scalars()
            )
        placed = [row for row in rows if row.status == pb.ORDER_STATUS_PLACED]
        failed = [row for row in rows if row.status == pb.ORDER_STATUS_FAILED]
        assert len(placed) + len(failed) == len(rows) == SHOPPERS
        assert len(placed) == UNITS  # enough shoppers: every unit was sold once
        assert Counter(retried) == Counter(
            {"ORDER_STATUS_PLACED": len(placed), "INSUFFICIENT_STOCK": len(failed)}
        )
        level = await stack.level(sku)
        assert (level.on_hand, level.reserved) == (UNITS - len(placed), 0)
        by_cart = {
            cart.id: (customer, cart) for customer, cart in zip(customers, carts, strict=True)
        }
        for row in rows:
            customer, cart = by_cart[row.cart_id]
            seen = (
                await stack.carts.GetCart(
                    cart_api.GetCartRequest(cart_id=cart.id), metadata=stack.customer(customer)
                )
            ).cart
            key = f"{row.id}:authorize"
            if row.status == pb.ORDER_STATUS_PLACED:
                assert announced[row.id] == 1
                assert (seen.status, seen.order_id) == (cart_pb.CART_STATUS_CHECKED_OUT, row.id)
                assert authorizations.get(key) == "approved" and key not in voided
            else:
                assert announced[row.id] == 0
                assert seen.status == cart_pb.CART_STATUS_ACTIVE
                assert key not in authorizations or key in voided
    finally:
        await db.dispose()
        drop_database(postgres_admin_url, name)
