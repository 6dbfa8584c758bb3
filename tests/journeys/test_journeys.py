"""The seeds' journeys (issue 17) as system tests: each told through the touchpoints it names
against the whole stack — the same code `make demo` narrates. A journey the stack cannot show
(NotShown: its timers too long) fails here: this stack's timers are short."""

from __future__ import annotations

import pytest

from tenpo.devtools.demo.journeys import JOURNEYS, Journey
from tenpo.devtools.demo.world import Shop
from tests.journeys.conftest import JOURNEY_MARKS

pytestmark = JOURNEY_MARKS
#: What some stories must tell (the touchpoint that starts them, the message they are about).
TOLD = {
    3: ("shelf shibuya", "records the pick-up", "pick-up at the shelf"),
    4: ("welcome mail to", "SMS reminder to", "applies"),
}


@pytest.mark.parametrize("journey", JOURNEYS, ids=lambda j: f"journey-{j.number}")
def test_journey(shop: Shop, journey: Journey) -> None:
    journey.run(shop)
    # The story was told through the touchpoints, not only checked.
    assert len(shop.say.lines) >= 4, shop.say.lines
    told = "\n".join(shop.say.lines)
    for words in TOLD.get(journey.number, ()):
        assert words in told, told
