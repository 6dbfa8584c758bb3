"""`python -m tenpo.devtools.demo`: tell the journeys against a running Tenpo; exit 1 when one
fails (0 when every journey went as told, or could not be shown on this stack's timers)."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from tenpo.devtools.demo.api import ApiError, Unreachable
from tenpo.devtools.demo.journeys import JOURNEYS, NOT_YET, NotShown
from tenpo.devtools.demo.world import JourneyFailed, Narrator, Shop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument(
        "--base-url",
        default=os.environ.get("TENPO_DEMO_URL", "http://127.0.0.1:8080"),
        help="the gateway of the running stack (TENPO_DEMO_URL; default %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("TENPO_DATA_DIR") or ".data"),
        help="its data directory: development credentials and the mail catcher (default .data)",
    )
    parser.add_argument(
        "--only",
        default=os.environ.get("TENPO_DEMO_ONLY", ""),
        help="journey numbers to tell, comma-separated (default: all)",
    )
    args = parser.parse_args(argv)
    wanted = {int(n) for n in args.only.split(",") if n.strip()}
    say = Narrator()
    shop = Shop.from_data_dir(args.base_url, args.data_dir, say)
    failed, not_shown = [], []
    try:
        try:
            shop.http.get("/readyz").raise_for_status()
        except Exception as error:  # whatever it is, the stack is not there
            print(f"Tenpo does not answer at {args.base_url} ({error}); start it with `make run`")
            return 1
        for journey in JOURNEYS:
            if wanted and journey.number not in wanted:
                continue
            say.title(f"Journey {journey.number}: {journey.title}")
            started = time.monotonic()
            try:
                journey.run(shop)
            except NotShown as reason:
                not_shown.append(journey.number)
                say("demo", f"not shown on this stack: {reason}")
            except (JourneyFailed, ApiError, Unreachable, TimeoutError) as error:
                failed.append(journey.number)
                say("demo", f"FAILED: {error}")
            except Exception:  # a bug of the demo itself: say where, go on
                failed.append(journey.number)
                say("demo", "FAILED with an unexpected error:\n" + traceback.format_exc())
            else:
                say("demo", f"done in {time.monotonic() - started:.1f} s")
    finally:
        shop.close()
    print()
    for number, why in NOT_YET.items():
        if not wanted or number in wanted:
            print(f"Journey {number}: not told yet ({why})")
    told = [j.number for j in JOURNEYS if not wanted or j.number in wanted]
    ok = [n for n in told if n not in failed and n not in not_shown]
    print(
        f"journeys told: {len(ok)} of {len(told)}; "
        f"not shown: {not_shown or 'none'}; failed: {failed or 'none'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
