"""Settings, loaded once from the environment (every name is documented in README)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class SimulatorSettings:
    """How fast the built-in warehouse-and-carrier simulator moves an order on."""

    step_s: float = 5.0  # each of pending→placed→shipped→delivered takes this long
    poll_s: float = 0.5


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
    simulator: SimulatorSettings = SimulatorSettings()

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
            simulator=SimulatorSettings(
                step_s=float(env.get("REPLENISH_SIM_STEP_S", base.simulator.step_s)),
                poll_s=float(env.get("REPLENISH_SIM_POLL_S", base.simulator.poll_s)),
            ),
        )
