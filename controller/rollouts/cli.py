"""``lockerfleet rollout create|follow|list|pause|resume|abort|rollback``: drive rollouts through the controller's API.

``follow`` draws one progress line (redrawn in place on a terminal, a new line per change otherwise) until the rollout
finishes, then says in plain words how it ended and which nodes failed; it exits 0 only for a completed rollout.
"""

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TextIO

import httpx
from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.rollouts.policy import RolloutPolicy
from controller.rollouts.targeting import Target
from schemas.cli import Command

_CONFIG = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

UPDATING: Final = ("dispatched", "downloading", "verifying", "installing", "restarting", "testing")
WAITING: Final = ("queued", "deferred")
FAILED: Final = ("failed", "rolled_back", "timed_out")
BAR_WIDTH: Final = 30


class RolloutClientSettings(BaseSettings):
    """Where the controller is, and the operator key to use."""

    model_config = _CONFIG

    url: AnyHttpUrl = Field(default=AnyHttpUrl("http://127.0.0.1:8080"), description="The controller's HTTP API.")
    operator_key: SecretStr = Field(description="An operator key (lockerfleet operator-key); best given by env.")


class RolloutCreateSettings(RolloutClientSettings):
    """``lockerfleet rollout create``: start rolling out a published release."""

    release_version: str = Field(description="The published release, e.g. 1.5.0.")
    target: Target = Field(default_factory=Target, description='Filters, e.g. \'{"sites": ["centre"]}\'.')
    policy: RolloutPolicy = Field(default_factory=RolloutPolicy, description="Waves, thresholds, limits (JSON).")
    follow: bool = Field(default=False, description="Follow it until it finishes.")
    interval_s: float = Field(default=1.0, gt=0, le=60, description="With --follow: refresh this often.")


class RolloutFollowSettings(RolloutClientSettings):
    """``lockerfleet rollout follow``: a live progress bar until the rollout finishes."""

    rollout_id: str = Field(description="The rollout, e.g. ro-3f2a9c1b0d4e.")
    interval_s: float = Field(default=1.0, gt=0, le=60, description="Refresh this often.")


class RolloutActSettings(RolloutClientSettings):
    """``lockerfleet rollout pause|resume|abort|rollback``: one operator decision."""

    rollout_id: str = Field(description="The rollout, e.g. ro-3f2a9c1b0d4e.")
    reason: str | None = Field(default=None, max_length=256, description="For abort: why (kept in its history).")


class RolloutListSettings(RolloutClientSettings):
    """``lockerfleet rollout list``: every rollout, one line each."""

    active: bool = Field(default=False, description="Only running or paused ones.")


class RolloutApiError(Exception):
    """The controller refused or could not be reached; the message says what to do."""


def _client(settings: RolloutClientSettings) -> httpx.Client:
    headers = {"Authorization": f"Bearer {settings.operator_key.get_secret_value()}"}
    return httpx.Client(base_url=str(settings.url).rstrip("/"), headers=headers, timeout=30.0)


def _call(client: httpx.Client, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
    try:
        response = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise RolloutApiError(f"cannot reach the controller at {client.base_url}: {exc}; check --url") from exc
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise RolloutApiError(f"{response.status_code} from {path}: {detail}")
    return response.json()


def _sum(totals: Mapping[str, int], states: tuple[str, ...]) -> int:
    return sum(totals.get(s, 0) for s in states)


def render(view: Mapping[str, Any]) -> str:
    """One progress line: a bar of succeeded nodes, counts by kind, the wave and the phase."""
    totals, nodes = view["totals"], max(1, view["nodes"])
    done = totals.get("succeeded", 0)
    filled = round(BAR_WIDTH * done / nodes)
    waves = len(view["waves"])
    return (
        f"{view['rollout_id']} {view['release_version']} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] "
        f"{done}/{view['nodes']} succeeded, {_sum(totals, UPDATING)} updating, {_sum(totals, WAITING)} waiting, "
        f"{_sum(totals, FAILED)} failed; wave {view['current_wave'] + 1}/{waves}; {view['phase']}"
    )


def outcome(view: Mapping[str, Any], failures: list[Mapping[str, Any]]) -> str:
    """How the rollout ended, in plain words, with the failed nodes (at most 10) and what to do next."""
    totals, rid, release = view["totals"], view["rollout_id"], view["release_version"]
    done, failed, nodes = totals.get("succeeded", 0), _sum(totals, FAILED), view["nodes"]
    untouched = totals.get("cancelled", 0) + _sum(totals, WAITING)
    match view["phase"]:
        case "completed":
            text = f"Rollout {rid} completed: {done} of {nodes} nodes now run {release}"
            text += f"; {failed} failed (within the thresholds)." if failed else "."
        case "aborted":
            text = (
                f"Rollout {rid} stopped: {view['abort_reason']}. {done} of {nodes} nodes run {release}, {failed} "
                f"failed, {untouched} were not updated. To send the updated nodes back: "
                f"lockerfleet rollout rollback --rollout-id {rid}"
            )
        case _:
            text = (
                f"Rollout {rid} was rolled back: the nodes that had committed {release} were sent back to their "
                f"previous release; {totals.get('rolled_back', 0)} are back so far, {done} still run {release}."
            )
    lines = [text]
    lines += [
        f"  {f['node_id']} (site {f['site']}): {f['state']}, {f['reason'] or 'no reason given'}" for f in failures
    ]
    return "\n".join(lines)


def follow(
    client: httpx.Client,
    rollout_id: str,
    interval_s: float,
    out: TextIO,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Draw progress until the rollout finishes; print the outcome; 0 if it completed, 1 otherwise."""
    tty, last = out.isatty(), ""
    while True:
        view = _call(client, "GET", f"/v1/rollouts/{rollout_id}")
        line = render(view)
        if tty:
            out.write(f"\r{line}\x1b[K")
            out.flush()
        elif line != last:
            out.write(line + "\n")
            out.flush()
        last = line
        if view["finished"]:
            break
        sleep(interval_s)
    if tty:
        out.write("\n")
    query = "&".join(f"state={s}" for s in FAILED)
    failures = _call(client, "GET", f"/v1/rollouts/{rollout_id}/nodes?{query}")[:10]
    out.write(outcome(view, failures) + "\n")
    return 0 if view["phase"] == "completed" else 1


def _api(run: Callable[[httpx.Client, Any], int]) -> Callable[[BaseSettings], int]:
    def command(settings: BaseSettings) -> int:
        assert isinstance(settings, RolloutClientSettings)
        with _client(settings) as client:
            try:
                return run(client, settings)
            except RolloutApiError as exc:
                print(f"lockerfleet rollout: {exc}", file=sys.stderr)
                return 1

    return command


def _create(client: httpx.Client, settings: RolloutCreateSettings) -> int:
    body = {
        "release_version": settings.release_version,
        "target": settings.target.model_dump(mode="json", exclude_none=True),
        "policy": settings.policy.model_dump(mode="json"),
    }
    view = _call(client, "POST", "/v1/rollouts", body)
    sizes = ", ".join(str(w["size"]) for w in view["waves"])
    print(f"rollout {view['rollout_id']} of {view['release_version']} to {view['nodes']} nodes, waves of {sizes}")
    if settings.follow:
        return follow(client, view["rollout_id"], settings.interval_s, sys.stdout)
    print(f"follow it: lockerfleet rollout follow --rollout-id {view['rollout_id']}")
    return 0


def _follow(client: httpx.Client, settings: RolloutFollowSettings) -> int:
    return follow(client, settings.rollout_id, settings.interval_s, sys.stdout)


def _list(client: httpx.Client, settings: RolloutListSettings) -> int:
    for view in _call(client, "GET", f"/v1/rollouts?active={str(settings.active).lower()}"):
        print(render(view))
    return 0


def _act(action: str) -> Callable[[httpx.Client, RolloutActSettings], int]:
    def act(client: httpx.Client, settings: RolloutActSettings) -> int:
        body = {"reason": settings.reason} if action == "abort" and settings.reason else None
        view = _call(client, "POST", f"/v1/rollouts/{settings.rollout_id}/{action}", body)
        print(f"rollout {view['rollout_id']} is {view['phase']}")
        print(render(view))
        return 0

    return act


ROLLOUT_COMMANDS: dict[str, Command] = {
    "create": Command("start rolling out a published release", RolloutCreateSettings, _api(_create), ("controller",)),
    "follow": Command("show a rollout's progress until it ends", RolloutFollowSettings, _api(_follow), ("controller",)),
    "list": Command("list rollouts", RolloutListSettings, _api(_list), ("controller",)),
    "pause": Command(
        "stop dispatching (updating nodes go on)", RolloutActSettings, _api(_act("pause")), ("controller",)
    ),
    "resume": Command("dispatch again", RolloutActSettings, _api(_act("resume")), ("controller",)),
    "abort": Command("stop a rollout for good", RolloutActSettings, _api(_act("abort")), ("controller",)),
    "rollback": Command(
        "abort and send updated nodes back to their previous release",
        RolloutActSettings,
        _api(_act("rollback")),
        ("controller",),
    ),
}
"""``lockerfleet rollout <name>``."""
