"""Settings, loaded once from the environment (every name is documented in README)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class SimulatorSettings:
    """How fast the built-in warehouse-and-carrier simulator moves an order on."""

    step_s: float = 5.0  # placed→shipped and shipped→delivered each take this long
    poll_s: float = 0.5
    initial_stock: int = 50  # per product, the first time it is ordered
    restock_s: float = 30.0  # a backordered product is restocked this long after
    restock_amount: int = 50
    # Fault injection for demos and tests: orders of these SKUs are declined
    # (payment) or lost in delivery.
    decline_skus: frozenset[str] = frozenset()
    lost_skus: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    database_url: str = ""  # empty: SQLite file in data_dir
    coap_host: str = "0.0.0.0"
    coap_port: int = 5683
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    kek_hex: str = field(default="", repr=False)  # never printed
    kek_file: Path | None = None
    group_commit_max: int = 64
    # "process": the group-commit writer runs in a child process and the event loop only
    # moves bytes (backend/ingest/writer_process.py); "thread": in this process.
    ingest_writer: str = "process"
    # Overload (backend/coap/server.py): past this many events waiting for the writer,
    # answer 5.03 with Max-Age = overload_retry_s instead of queueing.
    overload_max_waiting: int = 1024
    overload_retry_s: int = 5
    # Rate limits on POST /ev (backend/coap/ratelimit.py): requests per second and burst
    # per source address (IPv6: per /64), authenticated events per second and burst per
    # device (0 turns a limit off), buckets kept per table, and networks not limited.
    rate_source_per_s: float = 100.0
    rate_source_burst: float = 400.0
    rate_device_per_s: float = 1.0
    rate_device_burst: float = 64.0
    rate_tracked: int = 65536
    rate_exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # Who gets /.well-known/core: its answer is bigger than the request, so it would
    # amplify a forged source's traffic (backend/coap/server.py LocalDiscovery).
    discovery_from: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    simulator: SimulatorSettings = SimulatorSettings()
    merchant_url: str = ""  # empty: every order goes to the simulator
    merchant_secret: str = field(default="", repr=False)
    engine_poll_s: float = 0.5  # hold windows, outbox, offline checks
    low_battery_mv: int = 2300
    offline_after_s: float = 26 * 3600
    # Web pages (backend/web/pages): the key that signs session cookies (else an
    # owner-only file in data_dir), and whether to trust X-Forwarded-Proto/-For from
    # one reverse proxy in front (then cookies are Secure when the proxy speaks https).
    web_secret_key: str = field(default="", repr=False)
    behind_proxy: bool = False

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'replenish.db').resolve()}"

    @property
    def kek_path(self) -> Path:
        return self.kek_file or self.data_dir / "kek.key"

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        base = cls()
        return cls(
            data_dir=Path(env.get("REPLENISH_DATA_DIR", base.data_dir)),
            database_url=env.get("DATABASE_URL", ""),
            coap_host=env.get("REPLENISH_COAP_HOST", base.coap_host),
            coap_port=int(env.get("REPLENISH_COAP_PORT", base.coap_port)),
            http_host=env.get("REPLENISH_HTTP_HOST", base.http_host),
            http_port=int(env.get("REPLENISH_HTTP_PORT", base.http_port)),
            kek_hex=env.get("REPLENISH_KEK", ""),
            kek_file=Path(env["REPLENISH_KEK_FILE"]) if env.get("REPLENISH_KEK_FILE") else None,
            group_commit_max=int(env.get("REPLENISH_GROUP_COMMIT_MAX", base.group_commit_max)),
            ingest_writer=env.get("REPLENISH_INGEST_WRITER", base.ingest_writer),
            overload_max_waiting=int(env.get("REPLENISH_OVERLOAD_MAX_WAITING",
                                             base.overload_max_waiting)),
            overload_retry_s=int(env.get("REPLENISH_OVERLOAD_RETRY_S", base.overload_retry_s)),
            rate_source_per_s=float(env.get("REPLENISH_RATE_SOURCE_PER_S",
                                            base.rate_source_per_s)),
            rate_source_burst=float(env.get("REPLENISH_RATE_SOURCE_BURST",
                                            base.rate_source_burst)),
            rate_device_per_s=float(env.get("REPLENISH_RATE_DEVICE_PER_S",
                                            base.rate_device_per_s)),
            rate_device_burst=float(env.get("REPLENISH_RATE_DEVICE_BURST",
                                            base.rate_device_burst)),
            rate_tracked=int(env.get("REPLENISH_RATE_TRACKED", base.rate_tracked)),
            rate_exempt=tuple(sorted(_set(env["REPLENISH_RATE_EXEMPT"])))
            if "REPLENISH_RATE_EXEMPT" in env else base.rate_exempt,
            discovery_from=tuple(sorted(_set(env["REPLENISH_DISCOVERY_FROM"])))
            if "REPLENISH_DISCOVERY_FROM" in env else base.discovery_from,
            simulator=SimulatorSettings(
                step_s=float(env.get("REPLENISH_SIM_STEP_S", base.simulator.step_s)),
                poll_s=float(env.get("REPLENISH_SIM_POLL_S", base.simulator.poll_s)),
                initial_stock=int(env.get("REPLENISH_SIM_STOCK",
                                          base.simulator.initial_stock)),
                restock_s=float(env.get("REPLENISH_SIM_RESTOCK_S",
                                        base.simulator.restock_s)),
                decline_skus=_set(env.get("REPLENISH_SIM_DECLINE_SKUS", "")),
                lost_skus=_set(env.get("REPLENISH_SIM_LOST_SKUS", "")),
            ),
            merchant_url=env.get("REPLENISH_MERCHANT_URL", ""),
            merchant_secret=env.get("REPLENISH_MERCHANT_SECRET", ""),
            engine_poll_s=float(env.get("REPLENISH_ENGINE_POLL_S", base.engine_poll_s)),
            low_battery_mv=int(env.get("REPLENISH_LOW_BATTERY_MV", base.low_battery_mv)),
            offline_after_s=float(env.get("REPLENISH_OFFLINE_AFTER_S",
                                          base.offline_after_s)),
            web_secret_key=env.get("REPLENISH_SECRET_KEY", ""),
            behind_proxy=env.get("REPLENISH_BEHIND_PROXY", "").lower() in {"1", "true", "yes"},
        )


def _set(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())
