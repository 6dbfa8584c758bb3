"""The development keys and the customer service meet only through files: the service, which
must not import the development tooling, finds the dev stack's signing key by name."""

from __future__ import annotations

from pathlib import Path

from services.customer.config import CustomerSettings
from tenpo.devtools import keys
from tests.conftest import scratch_dir


def test_the_customer_service_signs_with_the_dev_stacks_key_in_development() -> None:
    with scratch_dir("tenpo-test-keys-") as directory:
        dev = keys.ensure_dev_keys(directory)
        settings = CustomerSettings(environment="development", auth_jwks_file=dev.jwks_path)
        assert [Path(p) for p in settings.signing_key_files] == [dev.private_key_path]
