"""Customer domain and credential rules, without servers."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from services.customer import domain as d
from services.customer.config import CustomerSettings
from services.customer.security import (
    KeyRing,
    Passwords,
    load_signing_key,
    same_secret,
    secret_hash,
)
from tenpo.devtools.keys import generate_key, public_jwk
from tenpo.kit.auth import StaticJwks, TokenVerifier
from tenpo.kit.errors import InvalidArgument

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_emails_are_normalised_and_keyed_case_insensitively() -> None:
    email = d.normalize_email("  Taro.Suzuki@EXAMPLE.JP ")
    assert email.address == "Taro.Suzuki@example.jp"
    assert email.key == "taro.suzuki@example.jp"
    for bad in ("", "no-at-sign", "a@b", "x" * 250 + "@example.jp", "two@@example.jp"):
        with pytest.raises(InvalidArgument) as caught:
            d.normalize_email(bad)
        assert caught.value.reason == "EMAIL_INVALID"
        assert bad.strip() == "" or bad not in caught.value.message  # never echoed


def test_password_rules() -> None:
    d.validate_password("correct horse battery", "taro@example.jp")
    for weak in ("short", "password123", "aaaaaaaaaaaaaa", "1212121212", "taro-secret-99"):
        with pytest.raises(InvalidArgument):
            d.validate_password(weak, "taro@example.jp")
    with pytest.raises(InvalidArgument) as caught:
        d.validate_password("x" * 129 + "abcde", None)
    assert caught.value.reason == "PASSWORD_INVALID"


def test_phone_numbers_become_e164() -> None:
    assert d.normalize_phone("090-1234-5678", "p") == "+819012345678"
    assert d.normalize_phone("03 1234 5678", "p") == "+81312345678"
    assert d.normalize_phone("+1 650-253-0000", "p") == "+16502530000"
    for bad in ("12345", "phone", "+81 0000", "9" * 40):
        with pytest.raises(InvalidArgument) as caught:
            d.normalize_phone(bad, "customer.phone_number")
        assert caught.value.field_violations[0].field == "customer.phone_number"


def test_names_fold_kana_and_search_ignores_width_and_kana_type() -> None:
    name = d.PersonName(" 山田 ", "花子", "やまだ", "ﾊﾅｺ").normalized()
    assert (name.family_name, name.family_name_kana, name.given_name_kana) == (
        "山田",
        "ヤマダ",
        "ハナコ",
    )
    violations = d.Violations()
    name.validate("customer.name", violations)
    assert not violations.items
    assert d.fold_for_search("ヤマダ") in name.search_text()
    assert d.fold_for_search("ｈａｎａｋｏ") == "hanako"
    bad = d.Violations()
    d.PersonName("", "花子", "Yamada", "").validate("customer.name", bad)
    assert {v.field for v in bad.items} == {
        "customer.name.family_name",
        "customer.name.family_name_kana",
    }


def test_japanese_addresses() -> None:
    address = d.normalize_address(
        d.PostalAddress(
            "jp",
            "１５０００４１",
            " 東京都 ",
            "渋谷区",
            ("神南1-2-3", " "),
            "山田 花子",
            "03-1234-5678",
        ),
        "address",
    )
    assert (address.region_code, address.postal_code) == ("JP", "150-0041")
    assert address.address_lines == ("神南1-2-3",)
    assert address.phone_number == "+81312345678"
    with pytest.raises(InvalidArgument) as caught:
        d.normalize_address(d.PostalAddress("JP", "15-41", "", "渋谷区", (), "", "x"), "a")
    assert {v.field for v in caught.value.field_violations} == {
        "a.postal_code",
        "a.administrative_area",
        "a.address_lines",
        "a.recipient",
        "a.phone_number",
    }


def test_lockout_doubles_from_the_threshold_up_to_the_maximum() -> None:
    seconds = [d.lockout_seconds(n, threshold=5, base=30, maximum=600) for n in range(1, 12)]
    assert seconds == [0, 0, 0, 0, 30, 60, 120, 240, 480, 600, 600]
    assert d.lockout_seconds(10_000, threshold=5, base=30, maximum=600) == 600


def test_attempts_check_outside_the_lock_only_while_all_failing_could_not_lock() -> None:
    # threshold 3: with nothing in flight, two attempts may check at once; the third is
    # decided under the row lock, as is any attempt once two failures are counted.
    assert d.may_check_outside_lock(0, 0, threshold=3)
    assert d.may_check_outside_lock(0, 1, threshold=3)
    assert not d.may_check_outside_lock(0, 2, threshold=3)
    assert not d.may_check_outside_lock(2, 0, threshold=3)
    assert not d.may_check_outside_lock(0, 0, threshold=1)
    # A failure decides the lock counting what is still in flight as failures too.
    assert d.lockout_exposure(1, 2) == 3


def test_in_flight_attempts_a_crashed_process_left_stop_counting() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert d.live_in_flight(2, now - timedelta(seconds=5), now) == 2
    assert d.live_in_flight(2, now - d.SIGN_IN_IN_FLIGHT_STALE, now) == 0
    assert d.live_in_flight(2, None, now) == 0
    assert d.live_in_flight(-1, now, now) == 0


def entry(
    purpose: d.ConsentPurpose, channel: d.ConsentChannel, status: d.ConsentStatus, minute: int
) -> d.ConsentEntry:
    return d.ConsentEntry(
        uuid.uuid4(),
        uuid.uuid4(),
        purpose,
        channel,
        d.ConsentAction.GRANT,
        status,
        "v1",
        2,
        None,
        "customer",
        NOW + timedelta(minutes=minute),
    )


def test_current_consent_is_the_latest_ledger_entry() -> None:
    m, e, s = d.ConsentPurpose.MARKETING, d.ConsentChannel.EMAIL, d.ConsentChannel.SMS
    states = d.current_consents(
        [
            entry(m, e, d.ConsentStatus.PENDING_CONFIRMATION, 1),
            entry(m, s, d.ConsentStatus.GRANTED, 2),
            entry(m, e, d.ConsentStatus.GRANTED, 3),
            entry(m, s, d.ConsentStatus.REVOKED, 4),
        ]
    )
    assert len(states) == 9
    by_key = {(x.purpose, x.channel): x.status for x in states}
    assert by_key[(m, e)] is d.ConsentStatus.GRANTED
    assert by_key[(m, s)] is d.ConsentStatus.REVOKED
    assert by_key[(d.ConsentPurpose.ANALYTICS, d.ConsentChannel.PUSH)] is d.ConsentStatus.NOT_SET


def test_marketing_mail_needs_double_opt_in() -> None:
    assert d.grant_outcome(
        d.ConsentPurpose.MARKETING, d.ConsentChannel.EMAIL, d.ConsentStatus.NOT_SET
    ) == (
        d.ConsentAction.REQUEST,
        d.ConsentStatus.PENDING_CONFIRMATION,
    )
    assert d.grant_outcome(
        d.ConsentPurpose.MARKETING, d.ConsentChannel.SMS, d.ConsentStatus.REVOKED
    ) == (
        d.ConsentAction.GRANT,
        d.ConsentStatus.GRANTED,
    )
    assert (
        d.grant_outcome(d.ConsentPurpose.ANALYTICS, d.ConsentChannel.EMAIL, d.ConsentStatus.GRANTED)
        is None
    )


def test_client_scopes_are_never_escalated() -> None:
    d.validate_client(
        "Kiosk 1",
        d.ClientKind.KIOSK,
        "shibuya",
        ["catalog:read", "orders:read"],
        frozenset({"orders:read"}),
    )
    with pytest.raises(InvalidArgument) as caught:
        d.validate_client(
            "",
            d.ClientKind.SMART_MIRROR,
            None,
            ["orders:write", "clients:write"],
            frozenset({"clients:write"}),
        )
    assert {v.field for v in caught.value.field_violations} == {
        "client.display_name",
        "client.store_id",
        "client.scopes[0]",
        "client.scopes[1]",
    }
    assert d.ClientKind.BACK_OFFICE_TOOL.token_kind == "service"
    assert d.ClientKind.POS.token_kind == "device"


def test_user_codes() -> None:
    code = d.new_user_code()
    assert len(code) == 8 and set(code) <= set(d.USER_CODE_ALPHABET)
    assert d.normalize_user_code(d.format_user_code(code).lower()) == code
    assert d.normalize_user_code("BCDF-GHJ0") is None
    assert d.normalize_user_code("BCDF") is None


def test_birthdays() -> None:
    assert d.parse_birthday(0, 0, 0, "b") is None
    assert d.parse_birthday(1990, 4, 12, "b") == date(1990, 4, 12)
    with pytest.raises(InvalidArgument):
        d.parse_birthday(1990, 2, 30, "b")


# --------------------------------------------------------------------------- credentials


def test_secrets_are_compared_by_hash() -> None:
    stored = secret_hash("s3cret")
    assert same_secret(stored, "s3cret")
    assert not same_secret(stored, "s3cret ")


async def test_passwords_use_argon2id_and_unknown_accounts_never_verify() -> None:
    passwords = Passwords(time_cost=1, memory_kib=64, parallelism=1)
    stored = await passwords.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert await passwords.verify(stored, "correct horse battery")
    assert not await passwords.verify(stored, "correct horse batter")
    assert not await passwords.verify(None, "anything at all")
    assert not await passwords.verify("not a hash", "anything at all")


@pytest.mark.parametrize("algorithm", ["ES256", "RS256", "EdDSA"])
async def test_key_ring_signs_what_the_kit_verifies(algorithm: str) -> None:
    pem, jwk = generate_key(algorithm=algorithm)
    key = load_signing_key(pem)
    assert key.kid == public_jwk(pem)["kid"] == jwk["kid"]  # RFC 7638 thumbprint
    ring = KeyRing([key], issuer="https://issuer.test", audience="tenpo")
    issued = ring.sign(
        subject="c-1",
        kind="customer",
        now=datetime.now(UTC),
        ttl=timedelta(minutes=10),
        scopes=["profile:read"],
        channel="SMART_MIRROR",
        store_id="ginza",
        device="cl_1",
    )
    verifier = TokenVerifier(
        StaticJwks(ring.jwks()), issuer="https://issuer.test", audience="tenpo"
    )
    principal = await verifier.verify(issued.token)
    assert (principal.subject, principal.store_id, principal.session_device) == (
        "c-1",
        "ginza",
        "cl_1",
    )
    assert principal.scopes == frozenset({"profile:read"})
    assert jwt.get_unverified_header(issued.token)["kid"] == key.kid
    assert "d" not in ring.jwks()["keys"][0]  # the private part is never published


def test_settings_default_to_the_dev_key_and_refuse_unsafe_production() -> None:
    dev = CustomerSettings(environment="development", auth_jwks_file=Path("/data/keys/jwks.json"))
    assert dev.signing_key_files == [Path("/data/keys/signing-key.pem")]
    with pytest.raises(ValueError, match="signing_key_files"):
        CustomerSettings(
            environment="production",
            page_token_secret="p" * 40,
            channel_assertion_secret="c" * 40,
            auth_jwks_url="https://gateway.example/.well-known/jwks.json",
            database_url="postgresql+asyncpg://x/y",
        )
    with pytest.raises(ValueError, match="argon2"):
        CustomerSettings(
            environment="production",
            page_token_secret="p" * 40,
            channel_assertion_secret="c" * 40,
            auth_jwks_url="https://gateway.example/.well-known/jwks.json",
            database_url="postgresql+asyncpg://x/y",
            signing_key_files=[Path("/secrets/key.pem")],
            argon2_memory_kib=1024,
        )
    with pytest.raises(RuntimeError, match="CUSTOMER_SIGNING_KEY_FILES"):
        KeyRing.from_files([Path("/nonexistent/key.pem")], issuer="i", audience="a")


async def test_password_hashing_is_bounded_in_concurrency() -> None:
    import asyncio
    import threading
    import time

    passwords = Passwords(time_cost=1, memory_kib=64, parallelism=1, max_concurrency=2)
    running, peak, lock = 0, 0, threading.Lock()

    def slow_hash(password: str) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return "hashed"

    class SlowHasher:
        hash = staticmethod(slow_hash)

    passwords._hasher = SlowHasher()  # type: ignore[assignment]
    await asyncio.gather(*(passwords.hash(f"password {n}") for n in range(6)))
    assert peak == 2
