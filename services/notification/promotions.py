"""Outgoing calls to the cart service's PromotionService: personal codes for journeys.

The notification service calls as itself (its client-credentials token, scope
promotions:write). Every call has a deadline. A cart service that does not answer, or
answers UNAVAILABLE, is ``Unavailable`` (the journey step is taken again later, with the
same request id, so a retry after a lost answer gets the same code); a refusal for good
(unknown promotion, not a code promotion) is ``CodeRefused``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import grpc
from google.protobuf import duration_pb2

from tenpo.cart.v1 import promotion_service_pb2 as promo_api
from tenpo.cart.v1 import promotion_service_pb2_grpc as promo_grpc
from tenpo.kit.errors import DomainError, Unavailable
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.service_token import TokenSource

log = logging.getLogger(__name__)

#: Answers that mean "not now": the step is retried.
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.ABORTED,
    }
)


@dataclass(frozen=True)
class IssuedCode:
    code: str
    expire_time: datetime


class CodeRefused(DomainError):
    """The cart service refused the code for good (its reason is kept)."""

    code = "FAILED_PRECONDITION"


class PromotionIssuer(Protocol):
    async def issue(
        self,
        promotion_id: str,
        customer_id: uuid.UUID,
        valid_for: timedelta,
        request_id: str,
        skus: Sequence[str] = (),
    ) -> IssuedCode: ...


class GrpcPromotions:
    def __init__(
        self, channel: grpc.aio.Channel | None, tokens: TokenSource, timeout_seconds: float
    ) -> None:
        self._stub = promo_grpc.PromotionServiceStub(channel) if channel is not None else None
        self._tokens = tokens
        self._timeout = timeout_seconds

    async def issue(
        self,
        promotion_id: str,
        customer_id: uuid.UUID,
        valid_for: timedelta,
        request_id: str,
        skus: Sequence[str] = (),
    ) -> IssuedCode:
        """``skus``: only these are eligible (a product she looked at); empty: the
        promotion's own scope."""
        if self._stub is None:
            raise Unavailable(
                "no cart service is configured (cart_target)", reason="CART_NOT_CONFIGURED"
            )
        request = promo_api.IssuePersonalCodeRequest(
            promotion_id=promotion_id,
            customer_id=str(customer_id),
            valid_for=duration_pb2.Duration(seconds=int(valid_for.total_seconds())),
            request_id=request_id,
            skus=list(skus),
        )
        try:
            response = await self._stub.IssuePersonalCode(
                request, timeout=self._timeout, metadata=await self._tokens.metadata()
            )
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code is grpc.StatusCode.UNAUTHENTICATED:
                self._tokens.invalidate()  # expired or rotated: sign in again next time
            if code in _TRANSIENT or code is grpc.StatusCode.UNAUTHENTICATED:
                log.warning("IssuePersonalCode failed", extra={"code": code.name})
                raise Unavailable(
                    "the cart service did not answer", reason="CART_UNAVAILABLE"
                ) from None
            reason = decode_error(error).reason or code.name
            raise CodeRefused("the cart service refused the personal code", reason=reason) from None
        return IssuedCode(response.code, response.expire_time.ToDatetime(tzinfo=UTC))
