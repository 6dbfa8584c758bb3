"""Default templates and journeys: the account mails, the welcome journey (welcome mail with
a personal code; an SMS pointing to it when it stays unopened), the abandoned-cart mail with
a personal code, the
order confirmation and ready-for-pickup SMS, a demo offer, and the engagement journeys of
``seed_engagement`` (birthday, thank-you, review request, lapsed), the return mails of
``seed_returns``. Seeding twice changes
nothing; a journey missing from an older seed is added, and what an older seed wrote and
nobody changed since (the welcome journey without its code, its templates) is brought up to
this seed's."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification import models as m
from services.notification.config import DEMO_PERSONAL_CODE_PROMOTION
from services.notification.domain import journeys as jd
from services.notification.domain.templates import CapPolicy, Category, Channel, Template
from services.notification.seed_engagement import engagement_journeys, engagement_templates
from services.notification.seed_returns import return_templates
from services.notification.store import JourneyStore, TemplateStore
from tenpo.kit.db import Database

E, S = Channel.EMAIL, Channel.SMS
T, M = Category.TRANSACTIONAL, Category.MARKETING
_ACCOUNT_LINK = "{{{{ shop_url }}}}/account/{path}?token={{{{ token }}}}"
#: The welcome mail's sample: its personal code (absent when the journey issues none).
_WELCOME_CODE = {"code": "ABCD2345EFGH", "code_expire_time": "2026-12-30T10:00:00+00:00"}
#: Text bodies an earlier seed wrote, replaced by this seed's where a database still holds
#: them unchanged (a retailer's own wording is never overwritten).
SUPERSEDED_TEXT = {
    (
        "welcome",
        E,
        "ja",
    ): "ご登録ありがとうございます。\n{{ shop_url }} でお買い物をお楽しみください。",
    ("welcome", E, "en"): "Thank you for registering.\nShop at {{ shop_url }}.",
    ("welcome_reminder", S, "ja"): "Tenpo: ようこそメールをお送りしました。特典をご確認ください。",
    (
        "welcome_reminder",
        S,
        "en",
    ): "Tenpo: we sent you a welcome mail with a gift. Check your inbox!",
}
#: The welcome journey's steps before it issued a code.
_WELCOME_WITHOUT_CODE = ["welcome-mail", "wait-for-open", "opened?", "reminder-sms"]


def default_templates() -> list[Template]:
    out = [
        # The welcome mail is the account's own (transactional, sent to every new customer);
        # the first-purchase code in it is part of signing up, so it shows when the journey
        # issued one (a shop without a welcome promotion sends the plain welcome).
        Template(
            "welcome",
            E,
            "ja",
            T,
            subject="{{ name or 'お客様' }}、Tenpoへようこそ",
            text_body="ご登録ありがとうございます。\n"
            "{% if code is defined %}はじめてのお買い物にお使いいただけるクーポン {{ code }} を"
            "お贈りします（{{ code_expire_time[:10] }}まで、どのチャネルでも）。\n{% endif %}"
            "{{ shop_url }} でお買い物をお楽しみください。",
            html_body="<html><body><p>ご登録ありがとうございます。</p>"
            "{% if code is defined %}<p>はじめてのお買い物にお使いいただけるクーポン "
            "<strong>{{ code }}</strong>（{{ code_expire_time[:10] }}まで、どのチャネルでも）"
            "</p>{% endif %}"
            '<p><a href="{{ shop_url }}">ショップへ</a></p></body></html>',
            sample_data={"name": "花子", "shop_url": "https://shop.example", **_WELCOME_CODE},
        ),
        Template(
            "welcome",
            E,
            "en",
            T,
            subject="Welcome to Tenpo{% if name %}, {{ name }}{% endif %}",
            text_body="Thank you for registering.\n"
            "{% if code is defined %}Your personal code {{ code }} gives you a discount on your "
            "first order until {{ code_expire_time[:10] }}, on every channel.\n{% endif %}"
            "Shop at {{ shop_url }}.",
            html_body="<html><body><p>Thank you for registering.</p>"
            "{% if code is defined %}<p>Your personal code <strong>{{ code }}</strong> gives you "
            "a discount on your first order until {{ code_expire_time[:10] }}, on every "
            "channel.</p>"
            "{% endif %}"
            '<p><a href="{{ shop_url }}">Visit the shop</a></p></body></html>',
            sample_data={"name": "Hanako", "shop_url": "https://shop.example", **_WELCOME_CODE},
        ),
        # The reminder points to the mail instead of carrying the code: the mail is the
        # channel the code belongs to (with its expiry, terms and the shop's link, which one
        # segment has no room for), and the reminder's whole point is that she opens it —
        # the open is what the journey waits for. One segment: UCS-2, at most 70 characters.
        # Without a welcome promotion the journey issues no code, and the SMS claims none.
        Template(
            "welcome_reminder",
            S,
            "ja",
            M,
            text_body="Tenpo: {% if code is defined %}ようこそメールに、はじめてのお買い物で"
            "使えるクーポンコードが届いています。{% else %}ようこそメールをお送りしました。"
            "{% endif %}メールをご確認ください。",
            segment_budget=1,
            cap_policy=CapPolicy.DEFER,
            sample_data=_WELCOME_CODE,
        ),
        Template(
            "welcome_reminder",
            S,
            "en",
            M,
            text_body="Tenpo: {% if code is defined %}a discount code for your first order is "
            "waiting in your welcome mail.{% else %}we sent you a welcome mail.{% endif %} "
            "Check your inbox!",
            segment_budget=1,
            cap_policy=CapPolicy.DEFER,
            sample_data=_WELCOME_CODE,
        ),
        Template(
            "offer",
            E,
            "ja",
            M,
            subject="今週のおすすめ",
            text_body="今週のおすすめ商品をご覧ください: {{ shop_url }}",
            html_body='<html><body><a href="{{ shop_url }}/offers">おすすめを見る</a>'
            "</body></html>",
            sample_data={"shop_url": "https://shop.example"},
        ),
        # Order SMS fit in one segment: Japanese is UCS-2 (70 characters), English GSM-7 (160).
        Template(
            "order_confirmation",
            S,
            "ja",
            T,
            text_body="Tenpo: ご注文{{ order_number }}を承りました。",
            segment_budget=1,
            sample_data={"order_number": "T-000123"},
        ),
        Template(
            "order_confirmation",
            S,
            "en",
            T,
            text_body="Tenpo: we received your order {{ order_number }}. Thank you!",
            segment_budget=1,
            sample_data={"order_number": "T-000123"},
        ),
        Template(
            "ready_for_pickup",
            S,
            "ja",
            T,
            text_body="Tenpo: ご注文{{ order_number }}の商品をご用意しました。"
            "店頭でお受け取りください。",
            segment_budget=1,
            sample_data={"order_number": "T-000123"},
        ),
        Template(
            "ready_for_pickup",
            S,
            "en",
            T,
            text_body="Tenpo: your order {{ order_number }} is ready for pickup at the store.",
            segment_budget=1,
            sample_data={"order_number": "T-000123"},
        ),
        Template(
            "cart_abandoned",
            E,
            "ja",
            M,
            subject="{{ name or 'お客様' }}、お買い物かごに商品が残っています",
            text_body="お買い物かごの商品をお取り置きしています。\n"
            "特別クーポン {{ code }} を{{ code_expire_time[:10] }}まで"
            "どのチャネルでもご利用いただけます。\n"
            "{{ shop_url }}/cart",
            html_body="<html><body><p>お買い物かごの商品をお取り置きしています。</p>"
            "<p>特別クーポン <strong>{{ code }}</strong>"
            "（{{ code_expire_time[:10] }}まで、どのチャネルでも）</p>"
            '<p><a href="{{ shop_url }}/cart">お買い物を続ける</a></p></body></html>',
            sample_data={
                "name": "花子",
                "code": "ABCD2345EFGH",
                "code_expire_time": "2026-12-02T10:00:00+00:00",
                "shop_url": "https://shop.example",
            },
        ),
        Template(
            "cart_abandoned",
            E,
            "en",
            M,
            subject="{{ name or 'Hello' }}, your cart is waiting",
            text_body="Your cart is waiting for you.\n"
            "Your personal code {{ code }} is valid until {{ code_expire_time[:10] }} on "
            "every channel.\n{{ shop_url }}/cart",
            html_body="<html><body><p>Your cart is waiting for you.</p>"
            "<p>Your personal code <strong>{{ code }}</strong> is valid until "
            "{{ code_expire_time[:10] }} on every channel.</p>"
            '<p><a href="{{ shop_url }}/cart">Back to your cart</a></p></body></html>',
            sample_data={
                "name": "Hanako",
                "code": "ABCD2345EFGH",
                "code_expire_time": "2026-12-02T10:00:00+00:00",
                "shop_url": "https://shop.example",
            },
        ),
    ]
    for key, path, ja, en in (
        ("account.verify_email", "verify-email", "メールアドレスの確認", "Confirm your e-mail"),
        ("account.password_reset", "reset-password", "パスワードの再設定", "Reset your password"),
        ("account.confirm_consent", "confirm-consent", "配信の確認", "Confirm your subscription"),
    ):
        link = _ACCOUNT_LINK.format(path=path)
        for language, subject in (("ja", ja), ("en", en)):
            out.append(
                Template(
                    key,
                    E,
                    language,
                    T,
                    subject=f"Tenpo: {subject}",
                    text_body=f"{subject}: {link}",
                    html_body=f'<html><body><p><a href="{link}">{subject}</a></p></body></html>',
                    sample_data={"token": "sample", "shop_url": "https://shop.example", "name": ""},
                )
            )
    return out


def welcome_journey(
    reminder_after: timedelta,
    promotion_id: str = "",
    code_valid_for: timedelta = timedelta(days=30),
) -> jd.Journey:
    """The seeds' welcome: a personal code of ``promotion_id`` (none when empty), a mail
    with it, then an SMS pointing to it if the mail is still unopened after
    ``reminder_after`` (24 hours by default; tests use seconds). While the cart service is
    away the run waits at the code step (retried with the same request id), so the mail
    goes out with its code a little later rather than without it."""
    code = (
        (jd.Step("welcome-code", jd.IssueCode(promotion_id, code_valid_for)),)
        if promotion_id
        else ()
    )
    return jd.Journey(
        display_name="Welcome",
        trigger_event="tenpo.customer.v1.CustomerRegistered",
        steps=(
            *code,
            jd.Step("welcome-mail", jd.Send("welcome", Channel.EMAIL)),
            jd.Step(
                "wait-for-open",
                jd.Wait(reminder_after, until=jd.Condition.LAST_MESSAGE_OPENED),
            ),
            jd.Step(
                "opened?",
                jd.Branch(jd.Condition.LAST_MESSAGE_OPENED, if_true=jd.EXIT),
            ),
            jd.Step("reminder-sms", jd.Send("welcome_reminder", Channel.SMS)),
        ),
    )


ORDER_PLACED = "tenpo.order.v1.OrderPlaced"


def commerce_journeys(promotion_id: str) -> list[jd.Journey]:
    """The cart and order journeys: an abandoned cart gets a mail with a personal code
    (valid 48 hours on any channel) unless she orders first; an order gets a confirmation
    SMS; a click & collect order ready at the store gets an SMS."""
    return [
        jd.Journey(
            display_name="Abandoned cart",
            trigger_event="tenpo.cart.v1.CartAbandoned",
            steps=(
                jd.Step("personal-code", jd.IssueCode(promotion_id, timedelta(hours=48))),
                jd.Step("cart-mail", jd.Send("cart_abandoned", Channel.EMAIL)),
            ),
            exit_events=(ORDER_PLACED,),
        ),
        jd.Journey(
            display_name="Order confirmation",
            trigger_event=ORDER_PLACED,
            steps=(jd.Step("confirmation-sms", jd.Send("order_confirmation", Channel.SMS)),),
        ),
        jd.Journey(
            display_name="Ready for pickup",
            trigger_event="tenpo.order.v1.ReadyForPickup",
            steps=(jd.Step("pickup-sms", jd.Send("ready_for_pickup", Channel.SMS)),),
        ),
    ]


async def seed_defaults(
    db: Database,
    reminder_after: timedelta,
    promotion_id: str = DEMO_PERSONAL_CODE_PROMOTION,
    *,
    birthday_promotion_id: str = DEMO_PERSONAL_CODE_PROMOTION,
    lapsed_promotion_id: str = DEMO_PERSONAL_CODE_PROMOTION,
    welcome_promotion_id: str = "",
    welcome_code_valid_for: timedelta = timedelta(days=30),
) -> None:
    journeys = [
        welcome_journey(reminder_after, welcome_promotion_id, welcome_code_valid_for),
        *commerce_journeys(promotion_id),
        *engagement_journeys(birthday_promotion_id, lapsed_promotion_id),
    ]
    async with db.unit_of_work() as uow:
        store = TemplateStore(uow.session)
        for template in [*default_templates(), *engagement_templates(), *return_templates()]:
            if await store.insert(template) is None:
                await _bring_up_to_date(store, template)
        if welcome_promotion_id:
            await _welcome_with_code(uow.session, journeys[0])
        for journey in journeys:
            exists = (
                await uow.session.execute(
                    sa.select(m.journeys.c.id).where(
                        m.journeys.c.display_name == journey.display_name
                    )
                )
            ).first()
            if exists is None:
                await JourneyStore(uow.session).insert(jd.validate(journey))
        await uow.commit()


async def _bring_up_to_date(store: TemplateStore, template: Template) -> None:
    """This seed's ``template`` where the database holds an older seed's, untouched."""
    old = SUPERSEDED_TEXT.get((template.key, template.channel, template.language))
    if old is None:
        return
    found = await store.find(template.key, template.channel, template.language)
    if found is None or found.language != template.language or found.text_body != old:
        return
    await store.update(
        dataclasses.replace(
            template, id=found.id, version=found.version + 1, created_at=found.created_at
        )
    )


async def _welcome_with_code(session: AsyncSession, welcome: jd.Journey) -> None:
    """An older seed's welcome journey, as it was seeded (no code step), gets the code step;
    runs under way keep their step (the ids stay) and the wait stays as configured then."""
    row = (
        await session.execute(
            sa.select(m.journeys.c.id).where(m.journeys.c.display_name == welcome.display_name)
        )
    ).first()
    if row is None:
        return
    store = JourneyStore(session)
    found = await store.get(row.id, for_update=True)
    if found is None or [s.id for s in found.steps] != _WELCOME_WITHOUT_CODE:
        return
    steps = {s.id: s for s in found.steps}
    upgraded = tuple(steps.get(s.id, s) for s in welcome.steps)
    await store.update(
        jd.validate(
            dataclasses.replace(found, steps=upgraded, version=found.version + 1, decisions=())
        )
    )
