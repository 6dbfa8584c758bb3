"""IdentityService and CustomerService over gRPC: proto ⇄ use-case translation only."""

from __future__ import annotations

from typing import Any

from grpc.aio import ServicerContext

from services.customer import convert
from services.customer import domain as d
from services.customer.servicers.overview import overview_response
from services.customer.usecases.addresses import ADDRESS_MASK
from services.customer.usecases.bundle import CustomerUseCases
from services.customer.usecases.common import IssuedTokens
from services.customer.usecases.consent import consent_key
from services.customer.usecases.profiles import CUSTOMER_MASK
from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import customer_service_pb2_grpc as api_grpc
from tenpo.customer.v1 import identity_service_pb2 as ids
from tenpo.customer.v1 import identity_service_pb2_grpc as ids_grpc
from tenpo.customer.v1 import resources_pb2 as pb
from tenpo.kit.auth import current_principal
from tenpo.kit.fieldmask import update_paths
from tenpo.kit.pagination import PageTokenCodec, page_size


def _tokens(issued: IssuedTokens) -> pb.TokenSet:
    return convert.token_set(
        issued.access, issued.subject, issued.refresh_token, issued.refresh_expires_at
    )


def _optional_store(value: str, path: str) -> str | None:
    cleaned = value.strip()
    if not cleaned:
        return None
    if not d.STORE_ID_PATTERN.match(cleaned):
        raise d.invalid(path, "a store id (lower-case letters, digits, dashes)")
    return cleaned


class IdentityServicer(ids_grpc.IdentityServiceServicer):
    def __init__(self, cases: CustomerUseCases, page_tokens: PageTokenCodec) -> None:
        self.sessions = cases.sessions
        self.mail = cases.mail
        self.clients = cases.clients
        self.handoff = cases.handoff
        self.page_tokens = page_tokens

    async def Register(
        self, request: ids.RegisterRequest, context: ServicerContext
    ) -> ids.RegisterResponse:
        customer, issued = await self.sessions.register(
            email=request.email,
            password=request.password,
            name=convert.from_person_name(request.name),
            locale=request.locale.strip(),
            channel=current_principal().channel,
        )
        return ids.RegisterResponse(customer=convert.customer(customer), tokens=_tokens(issued))

    async def SignIn(
        self, request: ids.SignInRequest, context: ServicerContext
    ) -> ids.SignInResponse:
        issued = await self.sessions.sign_in(
            email=request.email, password=request.password, channel=current_principal().channel
        )
        return ids.SignInResponse(tokens=_tokens(issued))

    async def SignInStaff(
        self, request: ids.SignInStaffRequest, context: ServicerContext
    ) -> ids.SignInStaffResponse:
        issued = await self.sessions.sign_in_staff(email=request.email, password=request.password)
        return ids.SignInStaffResponse(tokens=_tokens(issued))

    async def RefreshToken(
        self, request: ids.RefreshTokenRequest, context: ServicerContext
    ) -> ids.RefreshTokenResponse:
        return ids.RefreshTokenResponse(
            tokens=_tokens(await self.sessions.refresh(request.refresh_token))
        )

    async def SignOut(
        self, request: ids.SignOutRequest, context: ServicerContext
    ) -> ids.SignOutResponse:
        await self.sessions.sign_out(
            current_principal(), request.refresh_token, request.all_sessions
        )
        return ids.SignOutResponse()

    async def ChangePassword(
        self, request: ids.ChangePasswordRequest, context: ServicerContext
    ) -> ids.ChangePasswordResponse:
        await self.sessions.change_password(
            current_principal(), request.current_password, request.new_password
        )
        return ids.ChangePasswordResponse()

    async def RequestPasswordReset(
        self, request: ids.RequestPasswordResetRequest, context: ServicerContext
    ) -> ids.RequestPasswordResetResponse:
        await self.mail.request_password_reset(request.email)
        return ids.RequestPasswordResetResponse()

    async def ResetPassword(
        self, request: ids.ResetPasswordRequest, context: ServicerContext
    ) -> ids.ResetPasswordResponse:
        await self.mail.reset_password(request.token, request.new_password)
        return ids.ResetPasswordResponse()

    async def RequestEmailVerification(
        self, request: ids.RequestEmailVerificationRequest, context: ServicerContext
    ) -> ids.RequestEmailVerificationResponse:
        await self.mail.request_email_verification(current_principal())
        return ids.RequestEmailVerificationResponse()

    async def VerifyEmail(
        self, request: ids.VerifyEmailRequest, context: ServicerContext
    ) -> ids.VerifyEmailResponse:
        customer_id = await self.mail.verify_email(request.token)
        return ids.VerifyEmailResponse(customer_id=str(customer_id))

    async def IssueMailToken(
        self, request: ids.IssueMailTokenRequest, context: ServicerContext
    ) -> ids.IssueMailTokenResponse:
        customer, token, expires = await self.mail.issue_mail_token(
            current_principal(), request.token_id
        )
        return ids.IssueMailTokenResponse(
            customer_id=str(customer.id),
            token=token,
            expire_time=convert.timestamp(expires),
            email=customer.email or "",
            name=convert.person_name(customer.name),
            locale=customer.locale,
        )

    async def GetJwks(
        self, request: ids.GetJwksRequest, context: ServicerContext
    ) -> ids.GetJwksResponse:
        return ids.GetJwksResponse(keys=[pb.Jwk(**key) for key in self.sessions.jwks()["keys"]])

    async def CreateClient(
        self, request: ids.CreateClientRequest, context: ServicerContext
    ) -> ids.CreateClientResponse:
        message = request.client
        client, secret = await self.clients.create_client(
            current_principal(),
            display_name=message.display_name,
            kind=convert.required_enum(d.ClientKind, message.kind, "client.kind"),
            store_id=_optional_store(message.store_id, "client.store_id"),
            scopes=[s.strip() for s in message.scopes],
        )
        return ids.CreateClientResponse(client=convert.client(client), client_secret=secret)

    async def ListClients(
        self, request: ids.ListClientsRequest, context: ServicerContext
    ) -> ids.ListClientsResponse:
        size = page_size(request.page_size, default=50, maximum=200)
        store_id = _optional_store(request.store_id, "store_id")
        shape = {"s": store_id or "", "r": request.show_revoked}
        after = self.page_tokens.decode_keyset(request.page_token, query=shape)
        found = await self.clients.list_clients(
            current_principal(),
            store_id=store_id,
            show_revoked=request.show_revoked,
            after=after,
            limit=size + 1,
        )
        page, next_token = self.page_tokens.keyset_page(
            found, size, lambda c: (c.created_at, c.id), query=shape
        )
        return ids.ListClientsResponse(
            clients=[convert.client(c) for c in page], next_page_token=next_token
        )

    async def RevokeClient(
        self, request: ids.RevokeClientRequest, context: ServicerContext
    ) -> ids.RevokeClientResponse:
        client = await self.clients.revoke_client(current_principal(), request.client_id)
        return ids.RevokeClientResponse(client=convert.client(client))

    async def SignInClient(
        self, request: ids.SignInClientRequest, context: ServicerContext
    ) -> ids.SignInClientResponse:
        issued = await self.clients.sign_in_client(request.client_id, request.client_secret)
        return ids.SignInClientResponse(tokens=_tokens(issued))

    async def StartDeviceSession(
        self, request: ids.StartDeviceSessionRequest, context: ServicerContext
    ) -> ids.StartDeviceSessionResponse:
        session, device_code = await self.handoff.start_device_session(current_principal())
        code = d.format_user_code(session.user_code)
        return ids.StartDeviceSessionResponse(
            user_code=code,
            qr_payload=f"tenpo://handoff?code={code}",
            device_code=device_code,
            expire_time=convert.timestamp(session.expires_at),
            poll_interval_seconds=self.handoff.policy.poll_interval_seconds,
        )

    async def ApproveDeviceSession(
        self, request: ids.ApproveDeviceSessionRequest, context: ServicerContext
    ) -> ids.ApproveDeviceSessionResponse:
        session, client, latest_end = await self.handoff.approve_device_session(
            current_principal(), request.user_code
        )
        return ids.ApproveDeviceSessionResponse(
            device_name=client.display_name,
            channel=session.channel,  # type: ignore[arg-type]
            store_id=session.store_id or "",
            session_expire_time=convert.timestamp(latest_end),
        )

    async def ExchangeDeviceSession(
        self, request: ids.ExchangeDeviceSessionRequest, context: ServicerContext
    ) -> ids.ExchangeDeviceSessionResponse:
        outcome = await self.handoff.exchange_device_session(
            current_principal(), request.device_code
        )
        if outcome is None:
            return ids.ExchangeDeviceSessionResponse(state=pb.DEVICE_SESSION_STATE_PENDING)
        customer_id, issued = outcome
        return ids.ExchangeDeviceSessionResponse(
            state=pb.DEVICE_SESSION_STATE_APPROVED,
            tokens=_tokens(issued),
            customer_id=str(customer_id),
        )


class CustomerServicer(api_grpc.CustomerServiceServicer):
    def __init__(self, cases: CustomerUseCases, page_tokens: PageTokenCodec) -> None:
        self.profiles = cases.profiles
        self.addresses = cases.addresses
        self.consents = cases.consents
        self.privacy = cases.privacy
        self.overviews = cases.overviews
        self.segments = cases.segments
        self.page_tokens = page_tokens

    async def GetCustomer(
        self, request: api.GetCustomerRequest, context: ServicerContext
    ) -> api.GetCustomerResponse:
        customer = await self.profiles.get_customer(current_principal(), request.customer_id)
        return api.GetCustomerResponse(customer=convert.customer(customer))

    async def UpdateCustomer(
        self, request: api.UpdateCustomerRequest, context: ServicerContext
    ) -> api.UpdateCustomerResponse:
        message = request.customer
        changes: dict[str, Any] = {}
        for path in update_paths(request.update_mask.paths, message, CUSTOMER_MASK):
            if path == "name":
                changes["name"] = convert.from_person_name(message.name)
            elif path == "birthday":
                b = message.birthday
                changes["birthday"] = d.parse_birthday(b.year, b.month, b.day, "customer.birthday")
            elif path == "email":
                changes["email"] = message.email
            elif path == "phone_number":
                changes["phone_number"] = message.phone_number.strip() or None
            elif path == "locale":
                changes["locale"] = message.locale.strip() or d.DEFAULT_LOCALE
            elif path == "preferred_store_id":
                changes["preferred_store_id"] = message.preferred_store_id.strip() or None
        customer = await self.profiles.update_customer(
            current_principal(), message.id, changes, etag=message.etag
        )
        return api.UpdateCustomerResponse(customer=convert.customer(customer))

    async def SearchCustomers(
        self, request: api.SearchCustomersRequest, context: ServicerContext
    ) -> api.SearchCustomersResponse:
        size = page_size(request.page_size, default=20, maximum=100)
        shape = {"e": request.email, "p": request.phone_number, "n": request.name}
        position = self.page_tokens.decode_keyset(request.page_token, query=shape)
        after = (position[0], convert.parse_id(position[1], "page_token")) if position else None
        found = await self.profiles.search_customers(
            current_principal(),
            email=request.email,
            phone=request.phone_number,
            name=request.name,
            after=after,
            limit=size + 1,
        )
        page, next_token = self.page_tokens.keyset_page(
            found, size, lambda c: (c.created_at, c.id), query=shape
        )
        return api.SearchCustomersResponse(
            customers=[convert.customer(c) for c in page], next_page_token=next_token
        )

    async def ListAddresses(
        self, request: api.ListAddressesRequest, context: ServicerContext
    ) -> api.ListAddressesResponse:
        size = page_size(request.page_size, default=20, maximum=50)
        shape = {"c": request.customer_id}
        position = self.page_tokens.decode_keyset(request.page_token, query=shape)
        after = (position[0], convert.parse_id(position[1], "page_token")) if position else None
        customer, found = await self.addresses.list_addresses(
            current_principal(), request.customer_id, after, size + 1
        )
        page, next_token = self.page_tokens.keyset_page(
            found, size, lambda a: (a.created_at, a.id), query=shape
        )
        return api.ListAddressesResponse(
            addresses=[convert.address(a, customer) for a in page], next_page_token=next_token
        )

    async def CreateAddress(
        self, request: api.CreateAddressRequest, context: ServicerContext
    ) -> api.CreateAddressResponse:
        message = request.address
        customer, address = await self.addresses.create_address(
            current_principal(),
            request.customer_id,
            label=message.label,
            postal=convert.from_postal_address(message.postal_address),
            default_shipping=message.default_shipping,
            default_billing=message.default_billing,
            request_id=request.request_id,
            request=request,
        )
        return api.CreateAddressResponse(address=convert.address(address, customer))

    async def UpdateAddress(
        self, request: api.UpdateAddressRequest, context: ServicerContext
    ) -> api.UpdateAddressResponse:
        message = request.address
        address_id = convert.parse_id(message.id, "address.id")
        changes: dict[str, Any] = {}
        for path in update_paths(request.update_mask.paths, message, ADDRESS_MASK):
            if path == "postal_address":
                changes[path] = convert.from_postal_address(message.postal_address)
            else:
                changes[path] = getattr(message, path)
        customer, address = await self.addresses.update_address(
            current_principal(), request.customer_id, address_id, changes, etag=message.etag
        )
        return api.UpdateAddressResponse(address=convert.address(address, customer))

    async def DeleteAddress(
        self, request: api.DeleteAddressRequest, context: ServicerContext
    ) -> api.DeleteAddressResponse:
        address_id = convert.parse_id(request.address_id, "address_id")
        await self.addresses.delete_address(current_principal(), request.customer_id, address_id)
        return api.DeleteAddressResponse()

    async def ListConsents(
        self, request: api.ListConsentsRequest, context: ServicerContext
    ) -> api.ListConsentsResponse:
        size = page_size(request.page_size, default=50, maximum=100)
        shape = {"c": request.customer_id}
        cursor = self.page_tokens.decode(request.page_token, query=shape)
        try:
            after = (int(cursor["p"]), int(cursor["ch"])) if cursor else None
        except (KeyError, TypeError, ValueError):
            raise d.invalid("page_token", "unreadable cursor", "INVALID_PAGE_TOKEN") from None
        found = await self.consents.list_consents(
            current_principal(), request.customer_id, after=after, limit=size + 1
        )
        response = api.ListConsentsResponse(
            consents=[convert.consent_state(s) for s in found[:size]]
        )
        if len(found) > size:
            purpose, channel = consent_key(found[size - 1])
            response.next_page_token = self.page_tokens.encode(
                {"p": purpose, "ch": channel}, query=shape
            )
        return response

    async def GrantConsent(
        self, request: api.GrantConsentRequest, context: ServicerContext
    ) -> api.GrantConsentResponse:
        state = await self.consents.grant_consent(
            current_principal(),
            request.customer_id,
            convert.required_enum(d.ConsentPurpose, request.purpose, "purpose"),
            convert.required_enum(d.ConsentChannel, request.channel, "channel"),
            request.wording_version,
            request_id=request.request_id,
            request=request,
        )
        return api.GrantConsentResponse(consent=convert.consent_state(state))

    async def RevokeConsent(
        self, request: api.RevokeConsentRequest, context: ServicerContext
    ) -> api.RevokeConsentResponse:
        state = await self.consents.revoke_consent(
            current_principal(),
            request.customer_id,
            convert.required_enum(d.ConsentPurpose, request.purpose, "purpose"),
            convert.required_enum(d.ConsentChannel, request.channel, "channel"),
            request.wording_version,
            request_id=request.request_id,
            request=request,
        )
        return api.RevokeConsentResponse(consent=convert.consent_state(state))

    async def ConfirmConsent(
        self, request: api.ConfirmConsentRequest, context: ServicerContext
    ) -> api.ConfirmConsentResponse:
        state = await self.consents.confirm_consent(current_principal(), request.token)
        return api.ConfirmConsentResponse(consent=convert.consent_state(state))

    async def ListConsentHistory(
        self, request: api.ListConsentHistoryRequest, context: ServicerContext
    ) -> api.ListConsentHistoryResponse:
        size = page_size(request.page_size, default=50, maximum=200)
        purpose = convert.optional_enum(d.ConsentPurpose, request.purpose, "purpose")
        channel = convert.optional_enum(d.ConsentChannel, request.channel, "channel")
        shape = {"c": request.customer_id, "p": int(purpose or 0), "ch": int(channel or 0)}
        cursor = self.page_tokens.decode(request.page_token, query=shape)
        found = await self.consents.consent_history(
            current_principal(),
            request.customer_id,
            purpose=purpose,
            channel=channel,
            before_seq=int(cursor["s"]) if cursor else None,
            limit=size + 1,
        )
        response = api.ListConsentHistoryResponse(
            records=[convert.consent_record(entry) for _, entry in found[:size]]
        )
        if len(found) > size:
            response.next_page_token = self.page_tokens.encode(
                {"s": found[size - 1][0]}, query=shape
            )
        return response

    async def GetCustomer360(
        self, request: api.GetCustomer360Request, context: ServicerContext
    ) -> api.GetCustomer360Response:
        overview = await self.overviews.get(
            current_principal(), request.customer_id, request.recent_limit
        )
        return overview_response(overview)

    async def ExportCustomerData(
        self, request: api.ExportCustomerDataRequest, context: ServicerContext
    ) -> api.ExportCustomerDataResponse:
        # The caller's own credentials go along to the other services' exports: each
        # decides for itself whether this caller may have this customer's data.
        forward = tuple(
            (key, value)
            for key, value in context.invocation_metadata() or ()
            if key == "authorization" and isinstance(value, str)
        )
        found = await self.privacy.export(current_principal(), request.customer_id, forward)
        return api.ExportCustomerDataResponse(
            json=found.json, content_type="application/json", unavailable_services=found.unavailable
        )

    async def EraseCustomer(
        self, request: api.EraseCustomerRequest, context: ServicerContext
    ) -> api.EraseCustomerResponse:
        customer = await self.privacy.erase(current_principal(), request.customer_id)
        return api.EraseCustomerResponse(customer=convert.customer(customer))

    async def ListSegmentMembers(
        self, request: api.ListSegmentMembersRequest, context: ServicerContext
    ) -> api.ListSegmentMembersResponse:
        size = page_size(request.page_size, default=100, maximum=1000)
        shape = {"s": request.segment}
        cursor = self.page_tokens.decode(request.page_token, query=shape)
        after = convert.parse_id(str(cursor["a"]), "page_token") if cursor else None
        found = await self.segments.members(current_principal(), request.segment, after, size + 1)
        page, more = found[:size], len(found) > size
        token = self.page_tokens.encode({"a": str(page[-1][0])}, query=shape) if more else ""
        return api.ListSegmentMembersResponse(
            members=[
                api.SegmentMembership(
                    segment=request.segment.strip(),
                    customer_id=str(customer_id),
                    enter_time=convert.timestamp(entered_at),
                )
                for customer_id, entered_at in page
            ],
            next_page_token=token,
        )
