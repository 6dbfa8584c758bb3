"""UpdateCustomer and UpdateAddress read update_mask with AIP-134's meaning (the kit's
``update_paths``): named paths, ``*`` for a full replacement, and no paths for the fields
the request populates."""

from __future__ import annotations

import grpc

from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import events_pb2
from tenpo.customer.v1 import resources_pb2 as pb
from tests.services.customer.conftest import Service, expect_error
from tests.services.customer.test_customers_api import home, mask


async def _profile(service: Service, auth: tuple[tuple[str, str], ...]) -> pb.Customer:
    response = await service.customers.GetCustomer(
        api.GetCustomerRequest(customer_id="me"), metadata=auth
    )
    return response.customer


async def test_an_empty_mask_updates_the_populated_fields_only(service: Service) -> None:
    customer_id, email, auth = await service.register()
    before = await _profile(service, auth)
    updated = (
        await service.customers.UpdateCustomer(
            # No mask: locale and phone are set, so they change; the name, e-mail and
            # birthday, unset here, stay as they were (they are not cleared).
            api.UpdateCustomerRequest(
                customer=pb.Customer(
                    id="me", etag=before.etag, locale="en-US", phone_number="090-1111-2222"
                )
            ),
            metadata=auth,
        )
    ).customer
    assert (updated.locale, updated.phone_number) == ("en-US", "+819011112222")
    assert updated.name == before.name and updated.email == email
    events = await service.events(events_pb2.CustomerUpdated, customer_id)
    assert sorted(events[-1].changed_fields) == ["locale", "phone_number"]


async def test_a_mask_that_resolves_to_nothing_is_refused_and_changes_nothing(
    service: Service,
) -> None:
    customer_id, _, auth = await service.register()
    before = await _profile(service, auth)
    # Only output or identifying fields populated: nothing to update.
    details = await expect_error(
        service.customers.UpdateCustomer(
            api.UpdateCustomerRequest(customer=pb.Customer(id="me", etag=before.etag)),
            metadata=auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "UPDATE_MASK_INVALID",
    )
    assert [v.field for v in details.field_violations] == ["update_mask"]
    assert (await _profile(service, auth)).etag == before.etag
    assert await service.events(events_pb2.CustomerUpdated, customer_id) == []


async def test_an_explicit_mask_wins_over_populated_fields(service: Service) -> None:
    _, _, auth = await service.register()
    before = await _profile(service, auth)
    updated = (
        await service.customers.UpdateCustomer(
            api.UpdateCustomerRequest(
                customer=pb.Customer(
                    id="me", etag=before.etag, locale="en-US", phone_number="090-1111-2222"
                ),
                update_mask=mask("locale"),
            ),
            metadata=auth,
        )
    ).customer
    assert updated.locale == "en-US" and updated.phone_number == ""


async def test_address_updates_with_implied_and_full_masks(service: Service) -> None:
    _, _, auth = await service.register()
    first = (
        await service.customers.CreateAddress(
            api.CreateAddressRequest(customer_id="me", address=home()), metadata=auth
        )
    ).address
    assert first.default_shipping and first.default_billing
    # Implied mask: only the label is set, so the defaults stay.
    relabelled = (
        await service.customers.UpdateAddress(
            api.UpdateAddressRequest(
                customer_id="me", address=pb.Address(id=first.id, etag=first.etag, label="実家")
            ),
            metadata=auth,
        )
    ).address
    assert relabelled.label == "実家"
    assert relabelled.default_shipping and relabelled.default_billing
    # "*": every updatable field is replaced, so the unset default flags are cleared.
    replacement = home("丸の内1-1-1", "100-0005")
    replacement.id, replacement.etag, replacement.label = first.id, relabelled.etag, "会社"
    replaced = (
        await service.customers.UpdateAddress(
            api.UpdateAddressRequest(customer_id="me", address=replacement, update_mask=mask("*")),
            metadata=auth,
        )
    ).address
    assert replaced.label == "会社"
    assert list(replaced.postal_address.address_lines) == ["丸の内1-1-1"]
    assert not replaced.default_shipping and not replaced.default_billing
    profile = await _profile(service, auth)
    assert not profile.default_shipping_address_id and not profile.default_billing_address_id
