"""The seeds' return mails (transactional, e-mail, ja and en): the return authorization —
its number for the parcel, the units authorized, where to send them and by when — and its
cancellation. Queued by ``subscribers/returns.py`` from the order service's events."""

from __future__ import annotations

from services.notification.domain.templates import Category, Channel, Template

E, T = Channel.EMAIL, Category.TRANSACTIONAL
_SAMPLE = {
    "name": "花子",
    "shop_url": "https://shop.example",
    "order_number": "T-000123",
    "return_number": "R-000045",
    "expire_date": "2026-12-15",
    "expire_time": "2026-12-15 23:59",
    "ship_to": "dc-east",
    "lines": [{"sku": "SNK-0001-27", "quantity": 1}, {"sku": "SOCK-0002-M", "quantity": 2}],
}
_CANCELLED_SAMPLE = {
    "name": "花子",
    "shop_url": "https://shop.example",
    "order_number": "T-000123",
    "return_number": "R-000045",
}
_LINES_TEXT = "{% for line in lines %}- {{ line.sku }} × {{ line.quantity }}\n{% endfor %}"
_LINES_HTML = (
    "<ul>{% for line in lines %}<li>{{ line.sku }} × {{ line.quantity }}</li>{% endfor %}</ul>"
)


def return_templates() -> list[Template]:
    return [
        Template(
            "return_authorized",
            E,
            "ja",
            T,
            subject="Tenpo: ご返品を承りました（{{ return_number }}）",
            text_body="{% if name %}{{ name }}様{% else %}お客様{% endif %}\n\n"
            "ご注文{{ order_number }}の返品を承りました。返品番号: {{ return_number }}\n\n"
            "返品いただく商品:\n" + _LINES_TEXT + "\n"
            "送り方: 商品を梱包し、伝票と箱に返品番号 {{ return_number }} をご記入のうえ、"
            "返品受付拠点 {{ ship_to }} あてに {{ expire_time }} までに届くようお送りください。"
            "期限を過ぎると返品番号は無効になります。\n"
            "商品の到着後、元のお支払い方法に返金いたします。",
            html_body="<html><body><p>{% if name %}{{ name }}様{% else %}お客様{% endif %}</p>"
            "<p>ご注文{{ order_number }}の返品を承りました。返品番号: "
            "<strong>{{ return_number }}</strong></p><p>返品いただく商品:</p>" + _LINES_HTML + ""
            "<p>送り方: 商品を梱包し、伝票と箱に返品番号 {{ return_number }} をご記入のうえ、"
            "返品受付拠点 {{ ship_to }} あてに <strong>{{ expire_time }}</strong> までに届くよう"
            "お送りください。期限を過ぎると返品番号は無効になります。</p>"
            "<p>商品の到着後、元のお支払い方法に返金いたします。</p></body></html>",
            sample_data=_SAMPLE,
        ),
        Template(
            "return_authorized",
            E,
            "en",
            T,
            subject="Tenpo: your return {{ return_number }} is authorized",
            text_body="{% if name %}Dear {{ name }},{% else %}Hello,{% endif %}\n\n"
            "We accepted your return for order {{ order_number }}. "
            "Return number: {{ return_number }}\n\n"
            "Items to send back:\n" + _LINES_TEXT + "\n"
            "How to send it: pack the items, write the return number {{ return_number }} on "
            "the parcel and its label, and send it to our returns location {{ ship_to }} so "
            "that it arrives by {{ expire_time }}. After that date the return number is no "
            "longer valid.\n"
            "Once the parcel has arrived, we refund the original payment.",
            html_body="<html><body><p>{% if name %}Dear {{ name }},{% else %}Hello,{% endif %}"
            "</p><p>We accepted your return for order {{ order_number }}. Return number: "
            "<strong>{{ return_number }}</strong></p><p>Items to send back:</p>" + _LINES_HTML + ""
            "<p>How to send it: pack the items, write the return number {{ return_number }} "
            "on the parcel and its label, and send it to our returns location {{ ship_to }} "
            "so that it arrives by <strong>{{ expire_time }}</strong>. After that date the "
            "return number is no longer valid.</p>"
            "<p>Once the parcel has arrived, we refund the original payment.</p></body></html>",
            sample_data=_SAMPLE | {"name": "Hanako"},
        ),
        Template(
            "return_authorization_cancelled",
            E,
            "ja",
            T,
            subject="Tenpo: 返品{{ return_number }}を取り消しました",
            text_body="{% if name %}{{ name }}様{% else %}お客様{% endif %}\n\n"
            "ご注文{{ order_number }}の返品（返品番号 {{ return_number }}）を取り消しました。"
            "この返品番号で商品をお送りいただくことはできません。"
            "返品期間内であれば、あらためて返品をお申し込みいただけます。",
            html_body="<html><body><p>{% if name %}{{ name }}様{% else %}お客様{% endif %}</p>"
            "<p>ご注文{{ order_number }}の返品（返品番号 {{ return_number }}）を取り消しました。"
            "この返品番号で商品をお送りいただくことはできません。"
            "返品期間内であれば、あらためて返品をお申し込みいただけます。</p></body></html>",
            sample_data=_CANCELLED_SAMPLE,
        ),
        Template(
            "return_authorization_cancelled",
            E,
            "en",
            T,
            subject="Tenpo: your return {{ return_number }} is cancelled",
            text_body="{% if name %}Dear {{ name }},{% else %}Hello,{% endif %}\n\n"
            "The return {{ return_number }} for order {{ order_number }} is cancelled: please "
            "do not send a parcel with this return number. Within the return period you may "
            "ask for a return again.",
            html_body="<html><body><p>{% if name %}Dear {{ name }},{% else %}Hello,{% endif %}"
            "</p><p>The return {{ return_number }} for order {{ order_number }} is cancelled: "
            "please do not send a parcel with this return number. Within the return period "
            "you may ask for a return again.</p></body></html>",
            sample_data=_CANCELLED_SAMPLE | {"name": "Hanako"},
        ),
    ]
