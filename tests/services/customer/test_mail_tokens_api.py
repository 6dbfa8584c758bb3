"""Mailed tokens over gRPC against real PostgreSQL: e-mail verification, then a password
change in the verified session."""

from __future__ import annotations

import grpc

from tenpo.customer.v1 import events_pb2
from tenpo.customer.v1 import identity_service_pb2 as ids
from tests.services.customer.conftest import PASSWORD, Service, expect_error
from tests.services.customer.identity_helpers import (
    get_me,
)


async def test_email_verification_and_change_password(service: Service) -> None:
    customer_id, email, auth = await service.register()
    [sent] = await service.events(events_pb2.EmailVerificationRequested, customer_id)
    mailed = await service.mailed(sent)
    assert mailed.email == email and mailed.token
    await expect_error(
        service.identity.VerifyEmail(ids.VerifyEmailRequest(token="not-the-token")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VERIFICATION_TOKEN_INVALID",
    )
    verified = await service.identity.VerifyEmail(ids.VerifyEmailRequest(token=mailed.token))
    assert verified.customer_id == customer_id
    assert (await get_me(service, auth)).customer.email_verified
    await expect_error(
        service.identity.VerifyEmail(ids.VerifyEmailRequest(token=mailed.token)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VERIFICATION_TOKEN_INVALID",
    )
    await expect_error(
        service.identity.RequestEmailVerification(
            ids.RequestEmailVerificationRequest(), metadata=auth
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "EMAIL_ALREADY_VERIFIED",
    )

    await expect_error(
        service.identity.ChangePassword(
            ids.ChangePasswordRequest(
                current_password="not it at all", new_password="fresh passphrase 2"
            ),
            metadata=auth,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "PASSWORD_MISMATCH",
    )
    await service.identity.ChangePassword(
        ids.ChangePasswordRequest(current_password=PASSWORD, new_password="fresh passphrase 2"),
        metadata=auth,
    )
    await service.identity.SignIn(ids.SignInRequest(email=email, password="fresh passphrase 2"))
