"""The demo's API keys: an operator's and a courier partner's, kept 0600 in the run directory and reused by every run.

They are issued into the demo's store before the controller starts (so it never warns that no operator key exists)
and only when the kept one is missing, revoked or (for the partner) no longer covers every demo site.
"""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from controller.store import tokens as api_tokens
from controller.store.operators import TOKEN_PREFIX as OPERATOR_PREFIX
from controller.store.operators import OperatorStore
from controller.store.reservations import PARTNER_TOKEN_PREFIX, ReservationStore
from schemas.private_files import private_file

OPERATOR = "demo"
PARTNER = "democourier"


@dataclass(frozen=True)
class DemoKey:
    """A key the demo uses, where it is kept and whether an earlier run issued it."""

    token: str
    path: Path
    reused: bool

    @property
    def key_id(self) -> str:
        """The key's id (what ``revoke-key --key-id`` takes)."""
        return self.token.split("_", 2)[1]


@dataclass(frozen=True)
class DemoKeys:
    """The operator's key (``/v1/nodes``) and the courier partner's (``/v1/reservations``)."""

    operator: DemoKey
    partner: DemoKey


def demo_keys(store_url: str, run_dir: Path, sites: set[str], now: datetime) -> DemoKeys:
    """Reuse the keys kept under ``run_dir`` when the store still accepts them; issue (and keep) new ones otherwise."""
    store = ReservationStore(store_url)
    try:
        operators = OperatorStore(store.engine)
        kept = _read(run_dir / "operator.key", OPERATOR_PREFIX)
        if kept is not None and operators.authenticate(kept) is not None:
            operator = DemoKey(kept, run_dir / "operator.key", reused=True)
        else:
            operator = _keep(run_dir / "operator.key", operators.create_key(OPERATOR, now))
        kept = _read(run_dir / "partner.key", PARTNER_TOKEN_PREFIX)
        found = store.authenticate(kept) if kept is not None else None
        if kept is not None and found is not None and sites <= found.sites:
            partner = DemoKey(kept, run_dir / "partner.key", reused=True)
        else:
            partner = _keep(run_dir / "partner.key", store.create_api_key(PARTNER, sites, now))
    finally:
        store.close()
    return DemoKeys(operator, partner)


def _read(path: Path, prefix: str) -> str | None:
    """The token kept at ``path``, or None when there is none (or the file holds something else)."""
    if not path.is_file():
        return None
    token = path.read_text().strip()
    return token if api_tokens.split(token, prefix) is not None else None


def _keep(path: Path, token: str) -> DemoKey:
    private_file(path)  # 0600 before the secret goes in
    path.write_text(token + "\n")
    return DemoKey(token, path, reused=False)
