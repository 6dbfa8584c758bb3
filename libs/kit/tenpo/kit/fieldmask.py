"""``update_mask`` with the meaning of AIP-134, once for every service.

- paths given: exactly those fields change (an unknown or read-only path is refused);
- ``["*"]``: every updatable field is replaced (unset fields are cleared);
- no paths: the fields populated in the request's resource change (the implied mask).
A mask that resolves to no field is refused: an update must change something.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from google.protobuf.message import Message

from tenpo.kit.errors import FieldViolation, InvalidArgument

REASON = "UPDATE_MASK_INVALID"


def update_paths(
    mask_paths: Sequence[str], resource: Message, updatable: Collection[str]
) -> list[str]:
    """The paths an update changes, in the order of ``updatable``. ``updatable`` names the
    fields a client may change (dotted paths allowed: ``title.ja``)."""
    paths = list(mask_paths)
    if paths == ["*"]:
        return list(updatable)
    if paths:
        unknown = [p for p in paths if p not in updatable]
        if unknown:
            raise InvalidArgument(
                "update_mask names fields that cannot be updated",
                reason=REASON,
                field_violations=[
                    FieldViolation("update_mask", f"unknown or read-only: {p}") for p in unknown
                ],
            )
        chosen = set(paths)
        return [p for p in updatable if p in chosen]
    populated = {field.name for field, _ in resource.ListFields()}
    implied = [p for p in updatable if p.split(".", 1)[0] in populated]
    if not implied:
        raise InvalidArgument(
            "the update names no field to change",
            reason=REASON,
            field_violations=[
                FieldViolation("update_mask", "name the fields to change, or set them")
            ],
        )
    return implied
