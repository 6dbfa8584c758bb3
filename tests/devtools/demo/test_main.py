"""`make demo` without a stack: it says what is missing and exits non-zero."""

from __future__ import annotations

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
