"""Where a delivery goes, as inventory's sourcing needs it (a point to measure distances
from, and to decide whether a same-day store's radius reaches it). No I/O.

Carts hold postal addresses, not coordinates, and no geocoder is wired in, so the point
comes from bundled data, the best that applies:
1. the postal code's first three digits, for the major cities (``postal_points``: the
   district's centre, about 2–3 km off at worst);
2. else the prefectural office of the address's prefecture (tens of kilometres off in a
   large prefecture);
3. else Tokyo.
A postal code that contradicts the prefecture (its district more than ``MAX_MISMATCH_KM``
from the prefecture's office: a typo) is ignored. Precise enough to rank DCs and stores by
distance and to decide a same-day radius in a city; never used to route a van.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping

from services.order.domain.postal_points import POSTAL_PREFIX_POINTS

#: Prefecture (as written in addresses, with or without its suffix) → (latitude, longitude).
PREFECTURE_POINTS: Mapping[str, tuple[float, float]] = {
    "北海道": (43.064, 141.347),
    "青森": (40.824, 140.740),
    "岩手": (39.704, 141.153),
    "宮城": (38.269, 140.872),
    "秋田": (39.719, 140.102),
    "山形": (38.240, 140.363),
    "福島": (37.750, 140.468),
    "茨城": (36.342, 140.447),
    "栃木": (36.566, 139.884),
    "群馬": (36.391, 139.061),
    "埼玉": (35.857, 139.649),
    "千葉": (35.605, 140.123),
    "東京": (35.690, 139.692),
    "神奈川": (35.448, 139.643),
    "新潟": (37.902, 139.023),
    "富山": (36.695, 137.211),
    "石川": (36.595, 136.626),
    "福井": (36.065, 136.222),
    "山梨": (35.664, 138.568),
    "長野": (36.651, 138.181),
    "岐阜": (35.391, 136.722),
    "静岡": (34.977, 138.383),
    "愛知": (35.180, 136.907),
    "三重": (34.730, 136.509),
    "滋賀": (35.005, 135.869),
    "京都": (35.021, 135.756),
    "大阪": (34.686, 135.520),
    "兵庫": (34.691, 135.183),
    "奈良": (34.685, 135.833),
    "和歌山": (34.226, 135.168),
    "鳥取": (35.504, 134.238),
    "島根": (35.472, 133.051),
    "岡山": (34.662, 133.935),
    "広島": (34.397, 132.460),
    "山口": (34.186, 131.471),
    "徳島": (34.066, 134.559),
    "香川": (34.340, 134.043),
    "愛媛": (33.842, 132.766),
    "高知": (33.560, 133.531),
    "福岡": (33.607, 130.418),
    "佐賀": (33.249, 130.299),
    "長崎": (32.745, 129.874),
    "熊本": (32.790, 130.742),
    "大分": (33.238, 131.613),
    "宮崎": (31.911, 131.424),
    "鹿児島": (31.560, 130.558),
    "沖縄": (26.212, 127.681),
}
_TOKYO = PREFECTURE_POINTS["東京"]


#: A postal district this far from the address's prefectural office contradicts it.
MAX_MISMATCH_KM = 150.0


def delivery_point(address: Mapping[str, object] | None) -> tuple[float, float]:
    prefecture = _prefecture_point(address)
    postal = _postal_point(address)
    if postal is not None and (
        prefecture is None or distance_km(postal, prefecture) <= MAX_MISMATCH_KM
    ):
        return postal
    return prefecture or _TOKYO


def _prefecture_point(address: Mapping[str, object] | None) -> tuple[float, float] | None:
    area = str((address or {}).get("administrativeArea") or "").strip()
    for suffix in ("都", "道", "府", "県"):
        if area.endswith(suffix) and area != "北海道":
            area = area[: -len(suffix)]
            break
    return PREFECTURE_POINTS.get(area)


def _postal_point(address: Mapping[str, object] | None) -> tuple[float, float] | None:
    """The district of a 7-digit postal code ("150-0002", "１５０−０００２", "1500002")."""
    raw = unicodedata.normalize("NFKC", str((address or {}).get("postalCode") or ""))
    digits = "".join(c for c in raw if c.isascii() and c.isdigit())
    if len(digits) != 7:
        return None
    return POSTAL_PREFIX_POINTS.get(digits[:3])


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))
