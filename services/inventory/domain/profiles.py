"""Inventory domain: sourcing profiles — the rules sourcing follows, as versioned data. No I/O.

A profile (``default``, ``dc-first``, …) has versions. A version is created as a DRAFT, may be
changed while it is one, and is activated; from then on it never changes. Activating a newer
version RETIRES the active one, which stays readable for audit. Sourcing always uses the
ACTIVE version of the profile a request names (or of ``default``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from services.inventory.domain import LocationType, invalid
from tenpo.kit.errors import FailedPrecondition, NotFound

DEFAULT_PROFILE = "default"
PROFILE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_DESCRIPTION = 500
MAX_SHIPMENTS_LIMIT = 10
MAX_FALLBACKS = 4


class SourcingCriterion(IntEnum):
    # Values mirror tenpo.inventory.v1.SourcingCriterion.
    PICKUP_STORE_FIRST = 1
    FEWEST_SHIPMENTS = 2
    DISTANCE = 3
    LOCATION_PRIORITY = 4
    CAPACITY_LEFT = 5
    LOCATION_TYPE = 6


class FulfillmentMethod(IntEnum):
    PICKUP = 1
    DELIVERY = 2
    SAME_DAY = 3


class SourcingFallback(IntEnum):
    SPLIT_BEYOND_MAX = 1
    ANY_LOCATION_TYPE = 2
    PARTIAL = 3
    FAIL = 4


class SourcingProfileVersionState(IntEnum):
    DRAFT = 1
    ACTIVE = 2
    RETIRED = 3


#: Every location type, in the order a method without a list of its own prefers them.
ALL_TYPES: tuple[LocationType, ...] = (
    LocationType.DISTRIBUTION_CENTER,
    LocationType.FULFILLMENT_CENTER,
    LocationType.STORE,
)
#: Fallbacks that end the list: nothing after them would ever be tried.
TERMINAL_FALLBACKS = frozenset({SourcingFallback.PARTIAL, SourcingFallback.FAIL})


@dataclass(frozen=True)
class SourcingRules:
    """What a version says: ranked criteria, the most source locations per plan, the
    location types per method (in order of preference) and what to do when nothing fits."""

    criteria: tuple[SourcingCriterion, ...]
    max_shipments: int
    allowed_types: Mapping[FulfillmentMethod, tuple[LocationType, ...]] = field(
        default_factory=dict
    )
    fallbacks: tuple[SourcingFallback, ...] = ()
    description: str = ""

    def types_for(self, method: FulfillmentMethod) -> tuple[LocationType, ...]:
        """The types ``method`` may source from, preferred first (every type when the
        version does not list the method)."""
        return tuple(self.allowed_types.get(method, ALL_TYPES))

    def validate(self, path: str = "version") -> SourcingRules:
        if len(self.description) > MAX_DESCRIPTION:
            raise invalid(
                f"{path}.description",
                f"at most {MAX_DESCRIPTION} characters",
                "DESCRIPTION_INVALID",
            )
        if not self.criteria:
            raise invalid(f"{path}.criteria", "at least one criterion", "CRITERIA_REQUIRED")
        seen: set[SourcingCriterion] = set()
        for i, criterion in enumerate(self.criteria):
            if criterion in seen:
                raise invalid(f"{path}.criteria[{i}]", "listed twice", "CRITERION_REPEATED")
            if criterion is SourcingCriterion.PICKUP_STORE_FIRST and i:
                # It is a step before the ranking, not a tie-breaker: only first makes sense.
                raise invalid(
                    f"{path}.criteria[{i}]",
                    "PICKUP_STORE_FIRST can only be the first criterion",
                    "CRITERION_ORDER_INVALID",
                )
            seen.add(criterion)
        if not 1 <= self.max_shipments <= MAX_SHIPMENTS_LIMIT:
            raise invalid(
                f"{path}.max_shipments", f"1 to {MAX_SHIPMENTS_LIMIT}", "MAX_SHIPMENTS_INVALID"
            )
        for i, (method, types) in enumerate(self.allowed_types.items()):
            where = f"{path}.allowed_location_types[{i}].location_types"
            if not types:
                raise invalid(where, "at least one location type", "LOCATION_TYPES_REQUIRED")
            if len(set(types)) != len(types):
                raise invalid(
                    where, f"{method.name}: a type listed twice", "LOCATION_TYPE_REPEATED"
                )
        if len(self.fallbacks) > MAX_FALLBACKS:
            raise invalid(f"{path}.fallbacks", f"at most {MAX_FALLBACKS}", "FALLBACKS_INVALID")
        for i, fallback in enumerate(self.fallbacks):
            if fallback in self.fallbacks[:i]:
                raise invalid(f"{path}.fallbacks[{i}]", "listed twice", "FALLBACK_REPEATED")
            if fallback in TERMINAL_FALLBACKS and i != len(self.fallbacks) - 1:
                raise invalid(
                    f"{path}.fallbacks[{i}]",
                    f"{fallback.name} ends the list: nothing after it is tried",
                    "FALLBACK_ORDER_INVALID",
                )
        return self


#: What sourcing did before profiles were data, and what the ``default`` profile's first
#: version (written by migration 0004) says: the pickup store's own stock first; then the
#: fewest locations, the shortest distance, the best priority; up to three locations
#: searched exhaustively; beyond that as many as it takes; and what cannot be placed is
#: reported rather than refused.
BUILT_IN_RULES = SourcingRules(
    criteria=(
        SourcingCriterion.PICKUP_STORE_FIRST,
        SourcingCriterion.FEWEST_SHIPMENTS,
        SourcingCriterion.DISTANCE,
        SourcingCriterion.LOCATION_PRIORITY,
    ),
    max_shipments=3,
    allowed_types={method: ALL_TYPES for method in FulfillmentMethod},
    fallbacks=(SourcingFallback.SPLIT_BEYOND_MAX, SourcingFallback.PARTIAL),
    description="Built-in behaviour: pickup store first, fewest shipments, distance, priority.",
)


@dataclass(frozen=True)
class SourcingProfileVersion:
    profile: str
    version: int
    state: SourcingProfileVersionState
    rules: SourcingRules
    #: Bumped by every change of a draft; the etag.
    revision: int = 1
    create_actor: str = ""
    created_at: datetime | None = None
    activate_actor: str = ""
    activated_at: datetime | None = None
    retired_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"sourcingProfiles/{self.profile}/versions/{self.version}"

    @property
    def etag(self) -> str:
        return f'"{self.revision}"'

    def require_draft(self) -> None:
        """Active and retired versions are history: sourcing decided plans by them."""
        if self.state is not SourcingProfileVersionState.DRAFT:
            raise FailedPrecondition(
                f"{self.name} is {self.state.name.lower()} and never changes; create a new "
                "version and activate it",
                reason="SOURCING_PROFILE_VERSION_NOT_DRAFT",
                metadata={
                    "profile": self.profile,
                    "version": str(self.version),
                    "state": self.state.name,
                },
            )


def check_profile_name(name: str, path: str = "profile") -> str:
    if not PROFILE_PATTERN.match(name):
        raise invalid(path, "1-63 lowercase letters, digits or '-'", "PROFILE_NAME_INVALID")
    return name


def profile_not_found(profile: str, version: int = 0) -> NotFound:
    what = f"version {version} of" if version else "an active version of"
    return NotFound(
        f"no {what} sourcing profile {profile!r}",
        reason="SOURCING_PROFILE_NOT_FOUND",
        metadata={"profile": profile, "version": str(version)},
    )
