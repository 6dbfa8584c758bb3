"""`make demo`'s front end without a real stack: it says what is missing and exits non-zero;
a journey that fails fails the demo, one the stack's timers cannot show does not."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tenpo.devtools.demo.__main__ import main
from tenpo.devtools.stack.net import port_in_use
from tests.stack import quiet_ports


def test_without_credentials_it_says_to_start_make_run(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="make run"):
        main(["--base-url", "http://127.0.0.1:9", "--data-dir", str(tmp_path)])


def test_a_stack_that_is_not_running_fails_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dev-credentials.json").write_text('{"devices": [], "staff": {}}')
    port = quiet_ports()
    assert not port_in_use("127.0.0.1", port)
    assert main(["--base-url", f"http://127.0.0.1:{port}", "--data-dir", str(tmp_path)]) == 1
    assert "does not answer" in capsys.readouterr().out


def test_a_failed_journey_fails_the_demo_and_one_not_shown_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenpo.devtools.demo import __main__ as demo
    from tenpo.devtools.demo.journeys import Journey, NotShown
    from tenpo.devtools.demo.world import JourneyFailed, Shop

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/readyz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    def told(shop: Shop) -> None:
        shop.say("kiosk shibuya", "did its part")

    def waits(shop: Shop) -> None:
        raise NotShown("its timer is a day long here")

    def broken(shop: Shop) -> None:
        raise JourneyFailed("the SMS never came")

    (tmp_path / "dev-credentials.json").write_text('{"devices": [], "staff": {}}')
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.setattr(
            demo, "JOURNEYS", (Journey(1, "told", told), Journey(4, "timed", waits))
        )
        assert demo.main(["--base-url", url, "--data-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "kiosk shibuya    did its part" in out
        assert "not shown on this stack: its timer is a day long here" in out
        assert "journeys told: 1 of 2; not shown: [4]; failed: none" in out

        monkeypatch.setattr(demo, "JOURNEYS", (Journey(2, "broken", broken),))
        assert demo.main(["--base-url", url, "--data-dir", str(tmp_path)]) == 1
        out = capsys.readouterr().out
        assert "FAILED: the SMS never came" in out
        assert "failed: [2]" in out
    finally:
        server.shutdown()
        server.server_close()
