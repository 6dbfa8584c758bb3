"""SMS segment rules (3GPP TS 23.038): GSM-7 160 septets, 153 per part of a longer text;
UCS-2 70 UTF-16 units, 67 per part. One character outside GSM-7 (any Japanese) makes the
whole text UCS-2."""

from __future__ import annotations

from dataclasses import dataclass

GSM7 = "GSM-7"
UCS2 = "UCS-2"
#: No message may take more than this, whatever a template allows.
MAX_SEGMENTS = 10

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: Reached through the escape character: two septets each.
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SegmentCount:
    encoding: str
    segments: int
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)


def _pack(costs: list[int], single: int, part: int) -> int:
    """Parts needed when a unit of several costs is never split across parts (an escape
    pair, a surrogate pair)."""
    total = sum(costs)
    if total <= single:
        return 1 if costs else 0
    parts, used = 1, 0
    for cost in costs:
        if used + cost > part:
            parts += 1
            used = 0
        used += cost
    return parts


def count_segments(text: str) -> SegmentCount:
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENSION for c in text):
        costs = [2 if c in _GSM7_EXTENSION else 1 for c in text]
        return SegmentCount(GSM7, _pack(costs, 160, 153), sum(costs))
    costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return SegmentCount(UCS2, _pack(costs, 70, 67), sum(costs))
