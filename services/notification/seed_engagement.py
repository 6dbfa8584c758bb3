"""The seeds' engagement journeys and their templates: a birthday mail with a personal 20 %
code for a product she looked at, a thank-you with complementary products after an order,
a review request once an order is delivered or collected, and an offer (mail, SMS when the
mail cannot go) for customers who have not bought for six months. All are marketing: they
go only with consent on their channel."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from services.notification.domain import journeys as jd
from services.notification.domain.templates import CapPolicy, Category, Channel, Template

E, S = Channel.EMAIL, Channel.SMS
M = Category.MARKETING
BIRTHDAY = "tenpo.customer.v1.BirthdayReached"
SEGMENT_ENTERED = "tenpo.customer.v1.SegmentEntered"
ORDER_PLACED = "tenpo.order.v1.OrderPlaced"
DELIVERED = "tenpo.order.v1.FulfillmentDelivered"
COLLECTED = "tenpo.order.v1.PickedUp"
BIRTHDAY_CODE_VALIDITY = timedelta(days=30)
LAPSED_CODE_VALIDITY = timedelta(days=14)
_SHOP = "https://shop.example"
_CODE = {"code": "ABCD2345EFGH", "code_expire_time": "2026-12-30T10:00:00+00:00"}
_PRODUCT = {
    "product_title": "キャンバススニーカー",
    "product_url": f"{_SHOP}/products/p-1",
    "product_skus": ["SNK-0001-27"],
}
_PRODUCTS = {
    "products": [
        {"title": "スニーカー用防水スプレー", "url": f"{_SHOP}/products/p-2"},
        {"title": "コットンソックス", "url": f"{_SHOP}/products/p-3"},
    ]
}


def _mail(
    key: str, language: str, subject: str, text: str, html: str, sample: Mapping[str, object]
) -> Template:
    return Template(
        key,
        E,
        language,
        M,
        subject=subject,
        text_body=text,
        html_body=f"<html><body>{html}</body></html>",
        sample_data={"name": "花子" if language == "ja" else "Hanako", "shop_url": _SHOP, **sample},
    )


def engagement_templates() -> list[Template]:
    return [
        _mail(
            "birthday",
            "ja",
            "{{ name or 'お客様' }}、お誕生日おめでとうございます",
            "お誕生日の特別クーポン {{ code }}（20% オフ、{{ code_expire_time[:10] }}まで）を"
            "お贈りします。\n"
            "{% if product_title %}気になっていた「{{ product_title }}」にどうぞ: {{ product_url }}"
            "{% else %}{{ shop_url }}{% endif %}",
            "<p>お誕生日の特別クーポン <strong>{{ code }}</strong>（20% オフ、"
            "{{ code_expire_time[:10] }}まで）</p>"
            '{% if product_title %}<p><a href="{{ product_url }}">{{ product_title }}</a></p>'
            '{% else %}<p><a href="{{ shop_url }}">ショップへ</a></p>{% endif %}',
            {**_CODE, **_PRODUCT},
        ),
        _mail(
            "birthday",
            "en",
            "Happy birthday{% if name %}, {{ name }}{% endif %}!",
            "Your birthday code {{ code }} takes 20 % off until {{ code_expire_time[:10] }}.\n"
            "{% if product_title %}For the {{ product_title }} you looked at: {{ product_url }}"
            "{% else %}{{ shop_url }}{% endif %}",
            "<p>Your birthday code <strong>{{ code }}</strong>: 20 % off until "
            "{{ code_expire_time[:10] }}.</p>"
            '{% if product_title %}<p><a href="{{ product_url }}">{{ product_title }}</a></p>'
            '{% else %}<p><a href="{{ shop_url }}">Visit the shop</a></p>{% endif %}',
            {**_CODE, **_PRODUCT},
        ),
        _mail(
            "thank_you",
            "ja",
            "ご購入ありがとうございます（ご注文{{ order_number }}）",
            "ご注文{{ order_number }}ありがとうございました。\n"
            "{% if products %}あわせてお使いいただけるアイテム:\n"
            "{% for p in products %}・{{ p.title }} {{ p.url }}\n{% endfor %}{% endif %}",
            "<p>ご注文{{ order_number }}ありがとうございました。</p>"
            "{% if products %}<p>あわせてお使いいただけるアイテム:</p><ul>"
            '{% for p in products %}<li><a href="{{ p.url }}">{{ p.title }}</a></li>{% endfor %}'
            "</ul>{% endif %}",
            {"order_number": "T-000123", **_PRODUCTS},
        ),
        _mail(
            "thank_you",
            "en",
            "Thank you for your order {{ order_number }}",
            "Thank you for your order {{ order_number }}.\n"
            "{% if products %}Goes well with it:\n"
            "{% for p in products %}- {{ p.title }} {{ p.url }}\n{% endfor %}{% endif %}",
            "<p>Thank you for your order {{ order_number }}.</p>"
            "{% if products %}<p>Goes well with it:</p><ul>"
            '{% for p in products %}<li><a href="{{ p.url }}">{{ p.title }}</a></li>{% endfor %}'
            "</ul>{% endif %}",
            {"order_number": "T-000123", **_PRODUCTS},
        ),
        _mail(
            "review_request",
            "ja",
            "ご注文{{ order_number }}の商品はいかがですか",
            "ご注文{{ order_number }}の商品のご感想をお聞かせください。\n"
            "{{ shop_url }}/orders/{{ order_number }}/review",
            "<p>ご注文{{ order_number }}の商品のご感想をお聞かせください。</p>"
            '<p><a href="{{ shop_url }}/orders/{{ order_number }}/review">レビューを書く</a></p>',
            {"order_number": "T-000123"},
        ),
        _mail(
            "review_request",
            "en",
            "How do you like your order {{ order_number }}?",
            "Tell us what you think of your order {{ order_number }}.\n"
            "{{ shop_url }}/orders/{{ order_number }}/review",
            "<p>Tell us what you think of your order {{ order_number }}.</p>"
            '<p><a href="{{ shop_url }}/orders/{{ order_number }}/review">Write a review</a></p>',
            {"order_number": "T-000123"},
        ),
        _mail(
            "lapsed_offer",
            "ja",
            "{{ name or 'お客様' }}、お久しぶりです",
            "しばらくお会いしていませんね。クーポン {{ code }} を{{ code_expire_time[:10] }}まで"
            "どのチャネルでもご利用いただけます。\n{{ shop_url }}",
            "<p>しばらくお会いしていませんね。</p><p>クーポン <strong>{{ code }}</strong>"
            "（{{ code_expire_time[:10] }}まで）</p>"
            '<p><a href="{{ shop_url }}">新着アイテムを見る</a></p>',
            _CODE,
        ),
        _mail(
            "lapsed_offer",
            "en",
            "We miss you{% if name %}, {{ name }}{% endif %}",
            "It has been a while. Your code {{ code }} is valid until "
            "{{ code_expire_time[:10] }} on every channel.\n{{ shop_url }}",
            "<p>It has been a while.</p><p>Your code <strong>{{ code }}</strong> is valid "
            "until {{ code_expire_time[:10] }}.</p>"
            '<p><a href="{{ shop_url }}">See what is new</a></p>',
            _CODE,
        ),
        # A guest left her e-mail on her cart for this reminder (no personal code: those
        # are a customer's).
        _mail(
            "cart_abandoned_guest",
            "ja",
            "お買い物かごに商品が残っています",
            "お買い物かごの商品をお取り置きしています。\n同じブラウザでどうぞ: {{ shop_url }}/cart",
            "<p>お買い物かごの商品をお取り置きしています。</p>"
            '<p><a href="{{ shop_url }}/cart">お買い物を続ける</a></p>',
            {"cart_id": "c-1"},
        ),
        _mail(
            "cart_abandoned_guest",
            "en",
            "Your cart is waiting",
            "Your cart is waiting for you.\nContinue in the same browser: {{ shop_url }}/cart",
            "<p>Your cart is waiting for you.</p>"
            '<p><a href="{{ shop_url }}/cart">Back to your cart</a></p>',
            {"cart_id": "c-1"},
        ),
        # The fallback SMS fits one segment (Japanese: UCS-2, 70 characters).
        Template(
            "lapsed_offer",
            S,
            "ja",
            M,
            text_body="Tenpo: お久しぶりです。クーポン{{ code }}を{{ code_expire_time[5:10] }}まで"
            "ご利用いただけます。",
            segment_budget=1,
            cap_policy=CapPolicy.DEFER,
            sample_data=_CODE,
        ),
        Template(
            "lapsed_offer",
            S,
            "en",
            M,
            text_body="Tenpo: we miss you! Use code {{ code }} until {{ code_expire_time[:10] }}"
            " on any channel.",
            segment_budget=1,
            cap_policy=CapPolicy.DEFER,
            sample_data=_CODE,
        ),
    ]


def _consented_mail(step_id: str) -> jd.Step:
    """Leave before anything is looked up or issued when she takes no marketing mail."""
    return jd.Step(step_id, jd.Branch(jd.Condition.CONSENTED, if_false=jd.EXIT, channel=E))


def engagement_journeys(birthday_promotion_id: str, lapsed_promotion_id: str) -> list[jd.Journey]:
    review_steps = (
        jd.Step("consented?", jd.Branch(jd.Condition.CONSENTED, if_false=jd.EXIT, channel=E)),
        jd.Step("review-mail", jd.Send("review_request", E)),
    )
    return [
        jd.Journey(
            display_name="Birthday",
            trigger_event=BIRTHDAY,
            steps=(
                _consented_mail("consented?"),
                jd.Step("looked-at", jd.Recommend(jd.Source.VIEWED)),
                jd.Step(
                    "birthday-code",
                    jd.IssueCode(
                        birthday_promotion_id,
                        BIRTHDAY_CODE_VALIDITY,
                        only_recommended_product=True,
                    ),
                ),
                jd.Step("birthday-mail", jd.Send("birthday", E)),
            ),
        ),
        jd.Journey(
            display_name="Thank you",
            trigger_event=ORDER_PLACED,
            steps=(
                _consented_mail("consented?"),
                jd.Step("complements", jd.Recommend(jd.Source.COMPLEMENTARY, 3)),
                jd.Step("thank-you-mail", jd.Send("thank_you", E)),
            ),
        ),
        jd.Journey(
            display_name="Review request (delivered)", trigger_event=DELIVERED, steps=review_steps
        ),
        jd.Journey(
            display_name="Review request (collected)", trigger_event=COLLECTED, steps=review_steps
        ),
        jd.Journey(
            display_name="Lapsed six months",
            trigger_event=SEGMENT_ENTERED,
            trigger_match={"segment": "lapsed"},
            steps=(
                # A code only for someone an offer can reach: mail, else SMS.
                jd.Step(
                    "mail-consented?",
                    jd.Branch(jd.Condition.CONSENTED, if_true="offer-code", channel=E),
                ),
                jd.Step(
                    "sms-consented?",
                    jd.Branch(jd.Condition.CONSENTED, if_false=jd.EXIT, channel=S),
                ),
                jd.Step("offer-code", jd.IssueCode(lapsed_promotion_id, LAPSED_CODE_VALIDITY)),
                jd.Step("offer-mail", jd.Send("lapsed_offer", E)),
                jd.Step(
                    "mail-skipped?",
                    jd.Branch(jd.Condition.LAST_MESSAGE_SKIPPED, if_false=jd.EXIT),
                ),
                jd.Step("offer-sms", jd.Send("lapsed_offer", S)),
            ),
            exit_events=(ORDER_PLACED,),
        ),
    ]
