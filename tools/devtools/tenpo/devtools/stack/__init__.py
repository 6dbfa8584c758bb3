"""Development stack: embedded PostgreSQL and NATS from pip wheels, and every service on top.

``make run`` (``python -m tenpo.devtools.stack run``) starts PostgreSQL, creates one role and
database per service, starts NATS JetStream, creates development signing keys, runs each
service's ``seed`` (which migrates first: one process per database, three at a time, the
order seed after the customer seed whose credentials it reads), starts every service as its
own process (with ``<NAME>_MIGRATE_ON_START=false``: every replica and restart finds its
database migrated), waits until each answers the gRPC health check and prints where
everything listens, plus a staff token valid 12 h. While it runs, a service, PostgreSQL or
NATS that dies is started again after 1 s, 2 s, 4 s … (at most 30 s; back to 1 s after a
minute of running), each exit and recovery printed with the log to read; services reconnect
to a restarted server on their own.
Ctrl-C (or SIGTERM) stops the services, then NATS, then PostgreSQL. Data stays
in the data directory, so the next run finds it again. ``make migrate`` (``... migrate``)
only applies the migrations, starting PostgreSQL if needed and stopping it afterwards.
A second ``run`` on the same data directory refuses to start. A runner killed outright
(SIGKILL) takes NATS and the services with it, but PostgreSQL keeps running: the next
``run`` picks it up again.

Services are the directories ``services/<name>/`` that hold a ``__main__.py``. Every
service process gets ``<NAME>_SERVICE_NAME``, ``<NAME>_GRPC_PORT``, ``<NAME>_DATABASE_URL``
(not the gateway, which has no database), ``TENPO_NATS_URL``, ``TENPO_ENVIRONMENT``
(development), ``TENPO_LOG_FORMAT`` (json), ``TENPO_AUTH_JWKS_FILE``, ``TENPO_AUTH_ISSUER``,
``TENPO_AUTH_AUDIENCE`` and ``TENPO_<OTHER>_TARGET=127.0.0.1:<port>`` for every service;
the gateway also gets ``GATEWAY_HTTP_PORT``.

The data directory (``.data/`` at the repository root)::

    postgres/           the PostgreSQL cluster (owned by the ``tenpo-postgres`` user when
                        run as root, since PostgreSQL refuses to run as root)
    nats/               JetStream storage
    logs/<process>.log  postgres, nats and one file per service (migrate, seed and serve)
    keys/               development signing key and its JWKS
    secrets.json        generated database passwords, one per service
    dev-staff-token     the last staff token printed
    devstack.lock       held while a ``run`` or ``migrate`` is active

Environment variables read by the runner (all optional):

``TENPO_DATA_DIR``
    Data directory instead of ``<repo>/.data``.
``TENPO_SERVICES``
    Comma-separated services to run (default: all discovered); ``none`` runs only
    PostgreSQL and NATS.
``TENPO_POSTGRES_PORT``
    Embedded PostgreSQL port (55432).
``TENPO_NATS_PORT``, ``TENPO_NATS_MONITOR_PORT``
    Embedded NATS client port (4222) and monitoring port (8222; ``0`` turns it off).
``TENPO_PORT_BASE``
    Base of the services' gRPC ports (50050): gateway +0, catalog +1, inventory +2,
    customer +3, cart +4, order +5, notification +6; other services take the next free
    port from base +10.
``<NAME>_GRPC_PORT``
    One service's gRPC port, e.g. ``CATALOG_GRPC_PORT=6001``.
``GATEWAY_HTTP_PORT``
    The gateway's HTTP port (8080).
``TENPO_START_TIMEOUT``
    Seconds the services get to report SERVING (120).
``TENPO_STACK_REPLICAS``
    Processes per service (1; up to 4), the gateway excepted: replica n listens on its
    service's port + 100 n and logs to ``logs/<name>-<n+1>.log``; callers get every
    replica's address (``ipv4:127.0.0.1:50052,127.0.0.1:50152``) and balance round robin.
``TENPO_STACK_NATS_CLUSTER``
    Nodes of the embedded NATS (1; 3 or 5 form a JetStream cluster): node n takes the
    client, monitoring and route ports + n, stores in ``nats/cluster-<n+1>/`` and logs to
    ``logs/nats-<n+1>.log``; services get every node's URL and streams replicated 3 times.
``TENPO_NATS_CLUSTER_PORT``
    Route port of the first cluster node (6222).
``TENPO_STACK_EXIT_WITH_PARENT``
    Any value: ``run`` stops everything (as Ctrl-C does) once the process that started it is
    gone. The tests set it, so a test worker that dies leaves no stack behind.
``TENPO_NATS_URL``
    Use this NATS instead of starting the embedded one.
``TENPO_POSTGRES_ADMIN_URL``
    A superuser URL (``postgresql://postgres:pw@host:5432/postgres``): roles and databases
    are created there instead of on the embedded PostgreSQL.
``<NAME>_DATABASE_URL``
    Use this database for one service as is (nothing is created for it); when every
    service has one, no PostgreSQL is started at all.
``TENPO_AUTH_ISSUER``, ``TENPO_AUTH_AUDIENCE``, ``TENPO_LOG_FORMAT``
    Passed to the services instead of the development defaults.

The pieces are usable on their own, e.g. by the test fixtures: :class:`EmbeddedPostgres`,
:class:`EmbeddedNats`, :func:`ensure_database`, :func:`drop_database`, :func:`free_port`.
"""

from tenpo.devtools.stack.nats import EmbeddedNats, NatsError
from tenpo.devtools.stack.net import free_port
from tenpo.devtools.stack.postgres import (
    EmbeddedPostgres,
    PostgresError,
    drop_database,
    ensure_database,
    libpq_url,
)

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "NatsError",
    "PostgresError",
    "drop_database",
    "ensure_database",
    "free_port",
    "libpq_url",
]
