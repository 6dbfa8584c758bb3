"""NotificationService: proto ⇄ use-case translation, the caller's scope checked first."""

from __future__ import annotations

from grpc.aio import ServicerContext

from services.notification import convert
from services.notification.domain import journeys as jd
from services.notification.domain.push import PushSubscription
from services.notification.servicers_export import ExportRpcs
from services.notification.usecases import journeys as journey_usecases
from services.notification.usecases import templates as template_usecases
from services.notification.usecases.journeys import Journeys
from services.notification.usecases.messages import Messages
from services.notification.usecases.push import PushSubscriptions
from services.notification.usecases.push import owner as push_owner
from services.notification.usecases.recipients import Recipients
from services.notification.usecases.templates import Templates
from services.notification.usecases.tracking import Deliveries, Tracking
from tenpo.kit import wire
from tenpo.kit.auth import current_principal
from tenpo.kit.fieldmask import update_paths
from tenpo.kit.pagination import PageTokenCodec, page_size
from tenpo.notification.v1 import notification_service_pb2 as api
from tenpo.notification.v1 import notification_service_pb2_grpc as api_grpc
from tenpo.notification.v1 import resources_pb2 as pb

# Who may call each method (and with which scope) is the contract's access option, enforced
# by the kit's call guard before a method here runs.


class NotificationServicer(ExportRpcs, api_grpc.NotificationServiceServicer):
    def __init__(
        self,
        templates: Templates,
        messages: Messages,
        recipients: Recipients,
        journeys: Journeys,
        tracking: Tracking,
        page_tokens: PageTokenCodec,
        deliveries: Deliveries,
        push: PushSubscriptions,
    ) -> None:
        self.templates = templates
        self.messages = messages
        self.recipients = recipients
        self.journeys = journeys
        self.tracking = tracking
        self.page_tokens = page_tokens
        self.deliveries = deliveries
        self.push = push

    # -- templates ------------------------------------------------------------------

    async def CreateTemplate(
        self, request: api.CreateTemplateRequest, context: ServicerContext
    ) -> api.CreateTemplateResponse:
        created = await self.templates.create(
            current_principal().subject,
            convert.template_from_pb(request.template),
            request_id=request.request_id,
            request=request,
        )
        return api.CreateTemplateResponse(template=convert.template(created))

    async def GetTemplate(
        self, request: api.GetTemplateRequest, context: ServicerContext
    ) -> api.GetTemplateResponse:
        found = await self.templates.get(wire.parse_id(request.id, "id"))
        return api.GetTemplateResponse(template=convert.template(found))

    async def ListTemplates(
        self, request: api.ListTemplatesRequest, context: ServicerContext
    ) -> api.ListTemplatesResponse:
        size = page_size(request.page_size, maximum=100)
        cursor = self.page_tokens.decode(request.page_token, query=request.key)
        after = (cursor["k"], cursor["c"], cursor["l"]) if cursor else None
        found = await self.templates.list(request.key, after, size + 1)
        token = ""
        if len(found) > size:
            last = found[size - 1]
            token = self.page_tokens.encode(
                {"k": last.key, "c": int(last.channel), "l": last.language}, query=request.key
            )
        return api.ListTemplatesResponse(
            templates=[convert.template(t) for t in found[:size]], next_page_token=token
        )

    async def UpdateTemplate(
        self, request: api.UpdateTemplateRequest, context: ServicerContext
    ) -> api.UpdateTemplateResponse:
        template_id = wire.parse_id(request.template.id, "template.id")
        paths = update_paths(
            request.update_mask.paths, request.template, template_usecases.UPDATABLE
        )
        source = request.template
        changes = convert.template_from_pb(source if source.channel else _with_channel(source))
        updated = await self.templates.update(
            current_principal().subject,
            template_id,
            changes,
            paths,
            request_id=request.request_id,
            request=request,
        )
        return api.UpdateTemplateResponse(template=convert.template(updated))

    async def DeleteTemplate(
        self, request: api.DeleteTemplateRequest, context: ServicerContext
    ) -> api.DeleteTemplateResponse:
        await self.templates.delete(wire.parse_id(request.id, "id"))
        return api.DeleteTemplateResponse()

    async def PreviewTemplate(
        self, request: api.PreviewTemplateRequest, context: ServicerContext
    ) -> api.PreviewTemplateResponse:
        template_id = wire.parse_id(request.id, "id") if request.id else None
        inline = None if request.id else convert.template_from_pb(request.template)
        data = convert.struct_dict(request.data) if request.HasField("data") else None
        rendered = await self.templates.preview(template_id, inline, data)
        return api.PreviewTemplateResponse(
            subject=rendered.subject,
            text_body=rendered.text_body,
            html_body=rendered.html_body,
            sms_encoding=rendered.sms_encoding,
            segments=rendered.segments,
        )

    # -- messages -------------------------------------------------------------------

    async def SendMessage(
        self, request: api.SendMessageRequest, context: ServicerContext
    ) -> api.SendMessageResponse:
        customer_id = wire.parse_id(request.customer_id, "customer_id")
        channel = convert.channel(request.channel, "channel")
        row = await self.messages.send(
            current_principal().subject,
            customer_id=customer_id,
            template_key=request.template_key,
            channel=channel,
            data=convert.struct_dict(request.data),
            request_id=request.request_id,
            request=request,
        )
        return api.SendMessageResponse(message=convert.message(row))

    async def GetMessage(
        self, request: api.GetMessageRequest, context: ServicerContext
    ) -> api.GetMessageResponse:
        row = await self.messages.get(wire.parse_id(request.id, "id"))
        return api.GetMessageResponse(message=convert.message(row))

    async def ListMessages(
        self, request: api.ListMessagesRequest, context: ServicerContext
    ) -> api.ListMessagesResponse:
        customer_id = (
            wire.parse_id(request.customer_id, "customer_id") if request.customer_id else None
        )
        size = page_size(request.page_size, maximum=100)
        query = request.customer_id
        after = self.page_tokens.decode_keyset(request.page_token, query=query)
        rows = await self.messages.list(customer_id, after, size + 1)
        page, token = self.page_tokens.keyset_page(
            rows, size, lambda r: (r.created_at, r.id), query=query
        )
        return api.ListMessagesResponse(
            messages=[convert.message(r) for r in page], next_page_token=token
        )

    # -- suppressions ---------------------------------------------------------------

    async def AddSuppression(
        self, request: api.AddSuppressionRequest, context: ServicerContext
    ) -> api.AddSuppressionResponse:
        s = request.suppression
        row = await self.recipients.suppress(
            convert.channel(s.channel, "suppression.channel"),
            s.address,
            s.reason or "MANUAL",
            s.marketing_only,
        )
        return api.AddSuppressionResponse(suppression=convert.suppression(row))

    async def RemoveSuppression(
        self, request: api.RemoveSuppressionRequest, context: ServicerContext
    ) -> api.RemoveSuppressionResponse:
        await self.recipients.unsuppress(
            convert.channel(request.channel, "channel"), request.address
        )
        return api.RemoveSuppressionResponse()

    async def ListSuppressions(
        self, request: api.ListSuppressionsRequest, context: ServicerContext
    ) -> api.ListSuppressionsResponse:
        size = page_size(request.page_size, maximum=100)
        after = self.page_tokens.decode_keyset(request.page_token)
        rows = await self.recipients.list_suppressions(after, size + 1)
        page, token = self.page_tokens.keyset_page(rows, size, lambda r: (r.created_at, r.address))
        return api.ListSuppressionsResponse(
            suppressions=[convert.suppression(r) for r in page], next_page_token=token
        )

    # -- journeys -------------------------------------------------------------------

    async def CreateJourney(
        self, request: api.CreateJourneyRequest, context: ServicerContext
    ) -> api.CreateJourneyResponse:
        created = await self.journeys.create(
            current_principal().subject,
            convert.journey_from_pb(request.journey),
            request_id=request.request_id,
            request=request,
        )
        return api.CreateJourneyResponse(journey=convert.journey(created))

    async def GetJourney(
        self, request: api.GetJourneyRequest, context: ServicerContext
    ) -> api.GetJourneyResponse:
        found = await self.journeys.get(wire.parse_id(request.id, "id"))
        return api.GetJourneyResponse(journey=convert.journey(found))

    async def ListJourneys(
        self, request: api.ListJourneysRequest, context: ServicerContext
    ) -> api.ListJourneysResponse:
        size = page_size(request.page_size, maximum=100)
        after = self.page_tokens.decode_keyset(request.page_token)
        found = await self.journeys.list(after, size + 1)
        page, token = self.page_tokens.keyset_page(found, size, lambda j: (j.created_at, j.id))
        return api.ListJourneysResponse(
            journeys=[convert.journey(j) for j in page], next_page_token=token
        )

    async def UpdateJourney(
        self, request: api.UpdateJourneyRequest, context: ServicerContext
    ) -> api.UpdateJourneyResponse:
        journey_id = wire.parse_id(request.journey.id, "journey.id")
        paths = update_paths(request.update_mask.paths, request.journey, journey_usecases.UPDATABLE)
        changes = convert.journey_from_pb(request.journey)
        updated = await self.journeys.update(journey_id, changes, paths)
        return api.UpdateJourneyResponse(journey=convert.journey(updated))

    async def PauseJourney(
        self, request: api.PauseJourneyRequest, context: ServicerContext
    ) -> api.PauseJourneyResponse:
        saved = await self.journeys.set_state(
            wire.parse_id(request.id, "id"), jd.JourneyState.PAUSED
        )
        return api.PauseJourneyResponse(journey=convert.journey(saved))

    async def ResumeJourney(
        self, request: api.ResumeJourneyRequest, context: ServicerContext
    ) -> api.ResumeJourneyResponse:
        saved = await self.journeys.set_state(
            wire.parse_id(request.id, "id"), jd.JourneyState.ACTIVE
        )
        return api.ResumeJourneyResponse(journey=convert.journey(saved))

    # -- tracking (public: the signed token is the credential) ----------------------

    async def TrackOpen(
        self, request: api.TrackOpenRequest, context: ServicerContext
    ) -> api.TrackOpenResponse:
        await self.tracking.opened(request.token)
        return api.TrackOpenResponse()

    async def TrackClick(
        self, request: api.TrackClickRequest, context: ServicerContext
    ) -> api.TrackClickResponse:
        url = await self.tracking.clicked(request.token)
        return api.TrackClickResponse(url=url)

    async def Unsubscribe(
        self, request: api.UnsubscribeRequest, context: ServicerContext
    ) -> api.UnsubscribeResponse:
        await self.tracking.unsubscribe(request.token)
        return api.UnsubscribeResponse()

    # -- provider reports (the gateway, as a service, after checking the signature) -----

    async def RecordDeliveryStatus(
        self, request: api.RecordDeliveryStatusRequest, context: ServicerContext
    ) -> api.RecordDeliveryStatusResponse:
        message_id, suppressed = await self.deliveries.record(
            request.channel, request.provider_message_id, request.status
        )
        return api.RecordDeliveryStatusResponse(message_id=str(message_id), suppressed=suppressed)

    # -- push subscriptions (the customer herself) -------------------------------------

    async def CreatePushSubscription(
        self, request: api.CreatePushSubscriptionRequest, context: ServicerContext
    ) -> api.CreatePushSubscriptionResponse:
        customer_id = push_owner(current_principal(), request.customer_id)
        s = request.subscription
        saved = await self.push.register(
            customer_id, PushSubscription(s.endpoint, s.p256dh, s.auth, s.device_label)
        )
        return api.CreatePushSubscriptionResponse(subscription=convert.push_subscription(saved))

    async def ListPushSubscriptions(
        self, request: api.ListPushSubscriptionsRequest, context: ServicerContext
    ) -> api.ListPushSubscriptionsResponse:
        customer_id = push_owner(current_principal(), request.customer_id)
        found = await self.push.list(customer_id)
        return api.ListPushSubscriptionsResponse(
            subscriptions=[convert.push_subscription(x) for x in found]
        )

    async def DeletePushSubscription(
        self, request: api.DeletePushSubscriptionRequest, context: ServicerContext
    ) -> api.DeletePushSubscriptionResponse:
        customer_id = push_owner(current_principal(), request.customer_id)
        await self.push.delete(customer_id, request.id)
        return api.DeletePushSubscriptionResponse()


def _with_channel(template: pb.Template) -> pb.Template:
    """An update names no channel: borrow one so the translation passes; the use case keeps
    the stored template's key, channel and language."""
    copy = pb.Template()
    copy.CopyFrom(template)
    copy.channel = pb.MESSAGE_CHANNEL_EMAIL
    copy.category = copy.category or pb.MESSAGE_CATEGORY_TRANSACTIONAL
    return copy
