"""Settings: the one place that reads the environment.

Each setting is one dataclass field that names its environment variable and says what it
is for; its default is written here and nowhere else (policy classes take theirs from
`DEFAULTS`). The README's configuration table is rendered from these fields
(`settings_table`), and a test holds the README to it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from backend.errors import ConfigError


def _set(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def _networks(text: str) -> tuple[str, ...]:
    return tuple(sorted(_set(text)))


def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes"}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text

    parse.allowed = allowed  # what a test may set it to
    return parse


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def env(name: str, doc: str, parse: Callable[[str], Any] | None = None, *, default: Any,
        shown: str | None = None, secret: bool = False):
    """A field read from the environment variable `name` (`parse` turns its text into the
    value; by default the default's own type). `shown` is the default as the README
    writes it when the value itself would not read well."""
    return field(default=default, repr=not secret,
                 metadata={"env": name, "doc": doc, "parse": parse, "shown": shown})


def _lanes_for_this_host() -> int:
    """PostgreSQL writer lanes by default: a second lane pays where it has a core to
    itself. On two cores the event loop, the writer and PostgreSQL already share both,
    and one lane gave 6 % more events/s at 9 % less CPU per event (five alternating
    pairs, docs/performance.md)."""
    return 2 if (os.cpu_count() or 1) > 2 else 1


@dataclass(frozen=True)
class SimulatorSettings:
    """How fast the built-in warehouse-and-carrier simulator moves an order on."""

    step_s: float = env("REPLENISH_SIM_STEP_S", "simulator: seconds per shipping stage "
                        "(placed → shipped → delivered)", default=5.0)
    poll_s: float = env("REPLENISH_SIM_POLL_S", "simulator: seconds between its rounds",
                        default=0.5)
    initial_stock: int = env("REPLENISH_SIM_STOCK", "simulator: stock per product, the "
                             "first time it is ordered", default=50)
    restock_s: float = env("REPLENISH_SIM_RESTOCK_S", "simulator: a backordered product is "
                           "restocked this many seconds later", default=30.0)
    restock_amount: int = env("REPLENISH_SIM_RESTOCK_AMOUNT", "simulator: units added per "
                              "restock", default=50)
    # Fault injection for demos and tests.
    decline_skus: frozenset[str] = env("REPLENISH_SIM_DECLINE_SKUS", "simulator: orders of "
                                       "these SKUs are declined (comma-separated)", _set,
                                       default=frozenset())
    lost_skus: frozenset[str] = env("REPLENISH_SIM_LOST_SKUS", "simulator: orders of these "
                                    "SKUs are lost in delivery (comma-separated)", _set,
                                    default=frozenset())


_LOOPBACK = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = env("REPLENISH_DATA_DIR", "SQLite database, key-encryption key and web "
                         "secret", default=Path("data"))
    database_url: str = env("DATABASE_URL", "e.g. `postgresql://user@host/db`", default="",
                            shown="SQLite in the data folder", secret=True)
    coap_host: str = env("REPLENISH_COAP_HOST", "CoAP listener address", default="0.0.0.0")
    coap_port: int = env("REPLENISH_COAP_PORT", "CoAP listener port", default=5683)
    run_dir: Path = env("REPLENISH_RUN_DIR", "where ingest processes record which "
                        "database their CoAP port serves (`replenish-<uid>/` inside; "
                        "one port, one deployment)", default=Path(tempfile.gettempdir()),
                        shown="the system's temporary folder")
    http_host: str = env("REPLENISH_HTTP_HOST", "web app address", default="127.0.0.1")
    http_port: int = env("REPLENISH_HTTP_PORT", "web app port", default=8000)
    # What provisioning writes into devices and labels (provisioning/addresses.py).
    public_coap: str = env("REPLENISH_PUBLIC_COAP", "the CoAP server as devices reach it, "
                           "`host` or `host:port` (`[v6]:port`); written into every "
                           "provisioned device. Empty: 127.0.0.1 and `REPLENISH_COAP_PORT`, "
                           "with a warning", default="")
    public_url: str = env("REPLENISH_PUBLIC_URL", "the web app as households reach it, e.g. "
                          "`https://replenish.example`; label QR codes open `<url>/claim/"
                          "<code>`. Empty: this host's web address, with a warning",
                          default="")
    kek_hex: str = env("REPLENISH_KEK", "key-encryption key, 64 hex digits (else the file "
                       "below)", default="", secret=True)
    kek_previous_hex: str = env("REPLENISH_KEK_PREVIOUS", "with `REPLENISH_KEK`: the key "
                                "before a rotation, while keys are re-wrapped", default="",
                                secret=True)
    kek_file: Path | None = env("REPLENISH_KEK_FILE", "KEK file, owner-only; created on "
                                "first run only while the database holds no device key "
                                "(the key before a rotation: `<file>.previous`; "
                                "[docs/operations.md](docs/operations.md))",
                                _optional_path, default=None, shown="`data/kek.key`")
    group_commit_max: int = env("REPLENISH_GROUP_COMMIT_MAX", "most events per commit "
                                "(each commit is one fsync on SQLite)", default=128)
    ingest_writer: str = env("REPLENISH_INGEST_WRITER", "group-commit writer in a child "
                             "process (`process`: the event loop only moves bytes) or a "
                             "thread of the CoAP process (`thread`)", default="process")
    writer_lanes: int = env("REPLENISH_WRITER_LANES", "PostgreSQL: writer processes per "
                            "ingest process, each with one batch in flight on its own "
                            "connection (row locks keep them apart). SQLite, or the "
                            "`thread` writer: always one (one write lock)",
                            default=_lanes_for_this_host(),
                            shown="`2`; `1` on a host of 2 cores or fewer")
    overload_max_waiting: int = env("REPLENISH_OVERLOAD_MAX_WAITING", "past this many events "
                                    "waiting for the writer (or with the UDP receive buffer "
                                    "half full; the CoAP socket asks for 1 MiB, capped by "
                                    "`net.core.rmem_max`), answer 5.03 instead of queueing",
                                    default=1024)
    overload_retry_s: int = env("REPLENISH_OVERLOAD_RETRY_S", "Max-Age of that 5.03",
                                default=5)
    rate_source_per_s: float = env("REPLENISH_RATE_SOURCE_PER_S", "CoAP requests per second "
                                   "per source address (IPv6: per /64); over it: 5.03 with "
                                   "Max-Age ([docs/security.md](docs/security.md))",
                                   default=100.0)
    rate_source_burst: float = env("REPLENISH_RATE_SOURCE_BURST", "burst per source address",
                                   default=400.0)
    rate_device_per_s: float = env("REPLENISH_RATE_DEVICE_PER_S", "authenticated events per "
                                   "second per device (0 turns the limit off)", default=1.0)
    rate_device_burst: float = env("REPLENISH_RATE_DEVICE_BURST", "burst per device: room "
                                   "for a device sending its offline queue at once",
                                   default=64.0)
    rate_tracked: int = env("REPLENISH_RATE_TRACKED", "rate-limit buckets kept per table "
                            "(least recently used dropped first)", default=65536)
    rate_exempt: tuple[str, ...] = env("REPLENISH_RATE_EXEMPT", "networks not rate-limited "
                                       "(comma-separated; empty: none)", _networks,
                                       default=_LOOPBACK)
    # Its answer is bigger than the request, so it would amplify a forged source's traffic
    # (backend/coap/server.py LocalDiscovery).
    discovery_from: tuple[str, ...] = env("REPLENISH_DISCOVERY_FROM", "networks that get "
                                          "`/.well-known/core`; others get an empty 4.03",
                                          _networks, default=_LOOPBACK)
    simulator: SimulatorSettings = SimulatorSettings()
    merchant_url: str = env("REPLENISH_MERCHANT_URL", "webhook merchant "
                            "([docs/merchant-webhooks.md](docs/merchant-webhooks.md)); empty: "
                            "every order goes to the simulator", default="")
    merchant_secret: str = env("REPLENISH_MERCHANT_SECRET", "signs requests to and callbacks "
                               "from the merchant", default="", secret=True)
    # Outbound calls (household webhooks, the merchant): docs/operations.md, "Outbound
    # calls"; docs/security.md, "Outbound addresses".
    webhook_allow_networks: tuple[str, ...] = env(
        "REPLENISH_WEBHOOK_ALLOW_NETWORKS", "networks outbound calls may reach although "
        "they are loopback, private, link-local or reserved (comma-separated; empty: "
        "public addresses only)", _networks, default=())
    outbound_connect_timeout_s: float = env("REPLENISH_OUTBOUND_CONNECT_TIMEOUT_S",
                                            "webhook and merchant calls: seconds to connect",
                                            default=3.0)
    outbound_timeout_s: float = env("REPLENISH_OUTBOUND_TIMEOUT_S", "webhook and merchant "
                                    "calls: seconds for the whole call, answer included",
                                    default=10.0)
    outbound_threads: int = env("REPLENISH_OUTBOUND_THREADS", "household webhooks sent at "
                                "once (the merchant's calls have their own threads)",
                                default=16)
    outbound_per_destination: int = env("REPLENISH_OUTBOUND_PER_DESTINATION", "calls at "
                                        "once to one destination (scheme, host and port)",
                                        default=4)
    outbound_per_household: int = env("REPLENISH_OUTBOUND_PER_HOUSEHOLD", "calls at once "
                                      "on behalf of one household", default=2)
    outbound_breaker_failures: int = env("REPLENISH_OUTBOUND_BREAKER_FAILURES", "failures in "
                                         "a row that open a destination's circuit breaker",
                                         default=5)
    outbound_breaker_open_s: float = env("REPLENISH_OUTBOUND_BREAKER_OPEN_S", "an open "
                                         "breaker lets no call through this long, then one "
                                         "trial call", default=30.0)
    metrics_from: tuple[str, ...] = env("REPLENISH_METRICS_FROM", "networks that may read "
                                        "`/metrics` (Prometheus); others get 404",
                                        _networks, default=_LOOPBACK)
    worker_poll_s: float = env("REPLENISH_WORKER_POLL_S", "order worker round: hold windows, "
                               "outbox, offline checks", default=0.5)
    outbox_lease_s: float = env("REPLENISH_OUTBOX_LEASE_S", "an outbox item a worker took is "
                                "its own this long; then another worker may take it",
                                default=60.0)
    consent_expire_s: float = env("REPLENISH_CONSENT_EXPIRE_S", "an order waiting for the "
                                  "household's confirmation is cancelled after this long "
                                  "(it would hold its slot's open order for ever)",
                                  default=7 * 24 * 3600.0)
    low_battery_mv: int = env("REPLENISH_LOW_BATTERY_MV", "below this a device's battery is "
                              "reported low", default=2300)
    offline_after_s: float = env("REPLENISH_OFFLINE_AFTER_S", "a device silent this long is "
                                 "reported offline", default=26 * 3600.0)
    # The key that signs session cookies (else an owner-only file in data_dir).
    web_secret_key: str = env("REPLENISH_SECRET_KEY", "signs web session cookies (else "
                              "`data/web-secret.key`, owner-only, created on first run)",
                              default="", secret=True)
    api_token_days: float = env("REPLENISH_API_TOKEN_DAYS", "API tokens (log-in, "
                                "registration, `replenish household create`) expire this "
                                "many days after they are issued", default=90.0)
    behind_proxy: bool = env("REPLENISH_BEHIND_PROXY", "`true`: trust one reverse proxy's "
                             "X-Forwarded-For/-Proto (https → Secure cookies)", _flag,
                             default=False)
    # Empty: each process's own (backend/gc_tuning.py), written there once.
    gc_thresholds: tuple[int, ...] = env("REPLENISH_GC_THRESHOLDS", "garbage-collector "
                                         "thresholds after start-up in both processes "
                                         "([docs/performance.md](docs/performance.md))",
                                         _ints, default=(),
                                         shown="`2000,10,10` (CoAP), `20000,20,100` (writer)")
    log_format: str = env("REPLENISH_LOG_FORMAT", "`text`, or `json`: one JSON object per "
                          "line (time, level, logger, message)", _choice("text", "json"),
                          default="text")
    gc_full_every_s: float = env("REPLENISH_GC_FULL_EVERY_S", "the CoAP process's full "
                                 "collection (cycles among frozen objects)", default=600.0)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'replenish.db').resolve()}"

    @property
    def kek_path(self) -> Path:
        return self.kek_file or self.data_dir / "kek.key"

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        return _from_env(cls, os.environ if environ is None else environ)


DEFAULTS = Settings()


def _from_env(cls, environ) -> Any:
    values = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default):
            values[f.name] = _from_env(type(f.default), environ)
        elif (name := f.metadata["env"]) in environ:
            parse = f.metadata["parse"] or type(f.default)
            try:
                values[f.name] = parse(environ[name])
            except ValueError as err:  # one clear line, not a traceback
                shown = "<hidden>" if not f.repr else repr(environ[name])
                raise ConfigError(f"{name}={shown}: {err}") from None
    return cls(**values)


def settings_fields(cls=Settings) -> list[dataclasses.Field]:
    """Every environment-backed field, nested ones (the simulator's) in place."""
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default):
            out.extend(settings_fields(type(f.default)))
        else:
            out.append(f)
    return out


def _shown(f: dataclasses.Field) -> str:
    if f.metadata["shown"]:
        return f.metadata["shown"]
    value = f.default
    if value in ("", None, False, (), frozenset()):
        return "—"
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, float):
        value = f"{value:g}"
    return f"`{value}`"


def settings_table() -> str:
    """The README's configuration table, one row per environment variable."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{f.metadata['env']}` | {_shown(f)} | {f.metadata['doc']} |"
             for f in settings_fields()]
    return "\n".join(rows) + "\n"
