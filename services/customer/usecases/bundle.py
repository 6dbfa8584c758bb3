"""Customer use cases, wired: every use-case object of the service from its settings."""

from __future__ import annotations

from dataclasses import dataclass

from services.customer.config import CustomerSettings
from services.customer.inventory import InventoryLocations
from services.customer.security import KeyRing, Passwords
from services.customer.usecases.addresses import Addresses
from services.customer.usecases.clients import Clients, StoreDirectory
from services.customer.usecases.common import Context, Policy
from services.customer.usecases.consent import Consents
from services.customer.usecases.handoff import Handoff
from services.customer.usecases.mail_tokens import MailTokens
from services.customer.usecases.privacy import Privacy
from services.customer.usecases.profiles import Profiles
from services.customer.usecases.sessions import Sessions
from services.customer.usecases.staff import Staff
from tenpo.kit.db import Database


@dataclass(frozen=True)
class CustomerUseCases:
    context: Context
    sessions: Sessions
    mail: MailTokens
    staff: Staff
    clients: Clients
    handoff: Handoff
    profiles: Profiles
    addresses: Addresses
    consents: Consents
    privacy: Privacy


def build_use_cases(
    settings: CustomerSettings, db: Database, stores: StoreDirectory | None = None
) -> CustomerUseCases:
    """The use cases from settings; refuses to run without signing keys. Store ids are
    checked with inventory unless ``stores`` says otherwise."""
    keys = KeyRing.from_files(
        settings.signing_key_files, issuer=settings.auth_issuer, audience=settings.auth_audience
    )
    passwords = Passwords(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        max_concurrency=settings.argon2_max_concurrency,
    )
    context = Context(db, keys, passwords, Policy.from_settings(settings))
    mail = MailTokens(context)
    return CustomerUseCases(
        context=context,
        sessions=Sessions(context, mail),
        mail=mail,
        staff=Staff(context),
        clients=Clients(
            context,
            stores
            or InventoryLocations(settings.inventory_target, settings.inventory_timeout_seconds),
        ),
        handoff=Handoff(context),
        profiles=Profiles(context, mail),
        addresses=Addresses(context),
        consents=Consents(context, mail),
        privacy=Privacy(context),
    )
