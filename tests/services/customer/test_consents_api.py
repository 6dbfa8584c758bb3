"""ListConsents pages through the current consent states with sealed keyset tokens."""

from __future__ import annotations

import grpc

from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import resources_pb2 as pb
from tests.services.customer.conftest import Service, expect_error


async def test_list_consents_pages_in_purpose_then_channel_order(service: Service) -> None:
    _, _, auth = await service.register()
    await service.customers.GrantConsent(
        api.GrantConsentRequest(
            customer_id="me",
            purpose=pb.CONSENT_PURPOSE_ANALYTICS,
            channel=pb.CONSENT_CHANNEL_PUSH,
            wording_version="analytics-push-2026-04",
        ),
        metadata=auth,
    )
    everything = await service.customers.ListConsents(
        api.ListConsentsRequest(customer_id="me"), metadata=auth
    )
    keys = [(c.purpose, c.channel) for c in everything.consents]
    assert len(keys) == 9 and keys == sorted(keys) and not everything.next_page_token

    pages: list[list[tuple[int, int]]] = []
    token = ""
    while True:
        page = await service.customers.ListConsents(
            api.ListConsentsRequest(customer_id="me", page_size=4, page_token=token),
            metadata=auth,
        )
        pages.append([(c.purpose, c.channel) for c in page.consents])
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [k for p in pages for k in p] == keys  # each state once, in order
    granted = [
        c for c in everything.consents if c.status == pb.CONSENT_STATUS_GRANTED
    ]  # the page contents are the real states, not placeholders
    assert [(c.purpose, c.channel) for c in granted] == [
        (pb.CONSENT_PURPOSE_ANALYTICS, pb.CONSENT_CHANNEL_PUSH)
    ]


async def test_list_consents_refuses_foreign_tokens_and_negative_sizes(service: Service) -> None:
    customer_id, _, auth = await service.register()
    first = await service.customers.ListConsents(
        api.ListConsentsRequest(customer_id="me", page_size=2), metadata=auth
    )
    assert first.next_page_token
    # A token issued for "me" is bound to that query; naming the customer by id is another.
    await expect_error(
        service.customers.ListConsents(
            api.ListConsentsRequest(
                customer_id=customer_id, page_size=2, page_token=first.next_page_token
            ),
            metadata=auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    await expect_error(
        service.customers.ListConsents(
            api.ListConsentsRequest(customer_id="me", page_token="not-a-token"), metadata=auth
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    await expect_error(
        service.customers.ListConsents(
            api.ListConsentsRequest(customer_id="me", page_size=-1), metadata=auth
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_SIZE",
    )
