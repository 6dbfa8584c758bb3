"""Customer commands besides serve/migrate/seed: ``bootstrap-staff`` creates the first staff
user of a deployment (production included), once."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from services.customer import domain as d
from services.customer.config import CustomerSettings
from services.customer.usecases.bundle import build_use_cases
from tenpo.kit.db import Database
from tenpo.kit.errors import DomainError

#: Where the bootstrap password may come from instead of stdin (never the command line:
#: arguments are visible to every user of the machine in the process list).
PASSWORD_ENV = "CUSTOMER_BOOTSTRAP_STAFF_PASSWORD"  # noqa: S105 - a variable's name
EXIT_REFUSED = 3
EXIT_INVALID = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.customer bootstrap-staff",
        description=(
            "Create the first staff user. The password is read from "
            f"${PASSWORD_ENV}, or else from stdin (one line; prompted on a terminal)."
        ),
    )
    parser.add_argument("--email", required=True)
    parser.add_argument("--name", default="Administrator", help="display name")
    parser.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        help=f"a scope to grant (repeatable; default: {' '.join(d.STAFF_SCOPES)})",
    )
    parser.add_argument(
        "--even-if-staff-exist",
        action="store_true",
        help="create (or reset and re-enable) this staff user although staff users exist",
    )
    return parser


def _read_password() -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if sys.stdin.isatty():
        return getpass.getpass("password for the staff user: ")
    return sys.stdin.readline().rstrip("\r\n")


async def bootstrap_staff(settings: CustomerSettings, argv: list[str]) -> int:
    """The ``bootstrap-staff`` command; returns the process exit code."""
    args = _parser().parse_args(argv)
    password = _read_password()
    db = Database(settings.database_url, pool_size=1, max_overflow=0)
    try:
        staff = build_use_cases(settings, db).staff
        staff_id = await staff.bootstrap_staff(
            args.email,
            args.name,
            password,
            args.scopes or d.STAFF_SCOPES,
            even_if_staff_exist=args.even_if_staff_exist,
        )
    except DomainError as error:
        sys.stderr.write(f"bootstrap-staff refused ({error.reason}): {error.message}\n")
        for violation in error.field_violations:
            sys.stderr.write(f"  {violation.field}: {violation.description}\n")
        return EXIT_REFUSED if error.reason == "STAFF_EXISTS" else EXIT_INVALID
    finally:
        await db.dispose()
    sys.stdout.write(f"staff user {staff_id} ({args.email}) is ready; sign in with SignInStaff\n")
    sys.stdout.flush()
    return 0
