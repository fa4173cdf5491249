"""The operators' rollout API: ``/v1/rollouts`` (create, list, progress per state and wave, pause, resume, abort,
rollback). Every route needs an operator key, like ``/v1/nodes``."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from controller.api.models import ApiError
from controller.api.nodes import AUTH_ERRORS
from controller.releases.errors import ReleaseError
from controller.rollouts import NodeState, Phase, PhaseError, Rollout, RolloutPolicy, Target
from controller.rollouts.errors import NoTargetsError
from controller.rollouts.progress import ACTIVE
from controller.rollouts.runner import RolloutRunner
from controller.store.operators import OperatorKey
from schemas.command import ArtifactUrl
from schemas.semver import SEMVER_PATTERN

RolloutIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", description="The rollout's id.")]


class RolloutRequest(BaseModel):
    """Body of ``POST /v1/rollouts``: which release, to whom, how."""

    model_config = ConfigDict(extra="forbid")

    release_version: str = Field(pattern=SEMVER_PATTERN, description="A release published in --releases-dir.")
    target: Target = Field(default_factory=Target, description="Filters; the default is every node below the release.")
    policy: RolloutPolicy = Field(default_factory=RolloutPolicy, description="Waves, thresholds, limits, timeouts.")
    artifact_urls: list[ArtifactUrl] = Field(
        default=[], max_length=3, description="Mirrors nodes try before this controller's own artifact URL."
    )


class AbortRequest(BaseModel):
    """Optional body of ``POST /v1/rollouts/{id}/abort``."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=256, description="Why, for the history and the log.")


class WaveView(BaseModel):
    """One wave: its size, the successes it needs to let the next start, and its nodes per state."""

    wave: int
    size: int
    required_successes: int
    counts: dict[NodeState, int]


class RolloutView(BaseModel):
    """A rollout at a glance: its phase, and how many nodes are in each state, per wave and in total."""

    rollout_id: str
    release_version: str
    phase: Phase
    finished: bool = Field(description="Completed, aborted or rolled back: nothing more is dispatched.")
    current_wave: int
    created_at: datetime
    nodes: int
    waves: list[WaveView]
    totals: dict[NodeState, int]
    retries: int
    abort_reason: str | None
    target: Target
    policy: RolloutPolicy
    history: list[dict[str, Any]] = Field(description="Operator and engine decisions: at, event, by, reason.")

    @classmethod
    def of(cls, rollout: Rollout) -> "RolloutView":
        """The view of ``rollout``."""
        progress = rollout.progress()
        return cls(
            rollout_id=rollout.rollout_id,
            release_version=rollout.release_version,
            phase=progress.phase,
            finished=progress.phase not in ACTIVE,
            current_wave=progress.current_wave,
            created_at=datetime.fromtimestamp(rollout.created_at, UTC),
            nodes=sum(w.size for w in progress.waves),
            waves=[
                WaveView(wave=w.wave, size=w.size, required_successes=w.required_successes, counts=w.counts)
                for w in progress.waves
            ],
            totals=progress.totals,
            retries=progress.retries,
            abort_reason=progress.abort_reason,
            target=rollout.target,
            policy=rollout.policy,
            history=rollout.history,
        )


class NodeProgress(BaseModel):
    """One node's place in a rollout."""

    node_id: str
    site: str
    wave: int
    state: NodeState
    reason: str | None
    attempt: int
    retries: int
    since: datetime


def rollouts_router(runner: RolloutRunner, operator: Callable[..., OperatorKey]) -> APIRouter:
    """The ``/v1/rollouts`` routes driving ``runner``; ``operator`` is the operator-key dependency."""
    router = APIRouter(prefix="/v1/rollouts", tags=["rollouts"], responses=AUTH_ERRORS)
    Operator = Annotated[OperatorKey, Depends(operator)]  # noqa: N806 - a type alias

    def found(rollout_id: str) -> Rollout:
        rollout = runner.get(rollout_id)
        if rollout is None:
            raise HTTPException(404, f"no rollout {rollout_id}")
        return rollout

    def operate(act: Callable[[], Rollout]) -> RolloutView:
        try:
            return RolloutView.of(act())
        except KeyError as exc:
            raise HTTPException(404, f"no rollout {exc.args[0]}") from exc
        except PhaseError as exc:
            raise HTTPException(409, str(exc)) from exc

    @router.post("", status_code=201, responses={404: {"model": ApiError}, 422: {"model": ApiError}})
    def create(body: RolloutRequest, key: Operator) -> RolloutView:
        """Start rolling out a published release: canary first, then growing waves, gated per site."""
        try:
            rollout = runner.create(
                body.release_version, body.target, body.policy, key.operator, tuple(body.artifact_urls)
            )
        except ReleaseError as exc:
            raise HTTPException(404, f"{exc}; publish it with `lockerfleet release publish`") from exc
        except NoTargetsError as exc:
            raise HTTPException(422, str(exc)) from exc
        return RolloutView.of(rollout)

    @router.get("")
    def list_rollouts(
        _key: Operator, active: bool = Query(default=False, description="Only running or paused.")
    ) -> list[RolloutView]:
        """Every rollout, oldest first."""
        views = [RolloutView.of(r) for r in runner.rollouts()]
        return [v for v in views if not active or not v.finished]

    @router.get("/{rollout_id}", responses={404: {"model": ApiError}})
    def get_rollout(rollout_id: RolloutIdPath, _key: Operator) -> RolloutView:
        """One rollout with its nodes counted per state, per wave and in total."""
        return RolloutView.of(found(rollout_id))

    @router.get("/{rollout_id}/nodes", responses={404: {"model": ApiError}})
    def rollout_nodes(
        rollout_id: RolloutIdPath,
        _key: Operator,
        state: Annotated[list[NodeState] | None, Query(description="Only nodes in these states.")] = None,
    ) -> list[NodeProgress]:
        """The rollout's nodes (in target order) with their state, reason and attempt."""
        rollout = found(rollout_id)
        views = [rollout.node(row[0]) for row in rollout.to_dict()["nodes"]]
        return [
            NodeProgress(
                node_id=v.node_id,
                site=v.site,
                wave=v.wave,
                state=v.state,
                reason=v.reason,
                attempt=v.attempt,
                retries=v.retries,
                since=v.since,
            )
            for v in views
            if state is None or v.state in state
        ]

    @router.post("/{rollout_id}/pause", responses={404: {"model": ApiError}, 409: {"model": ApiError}})
    def pause(rollout_id: RolloutIdPath, key: Operator) -> RolloutView:
        """Stop dispatching; nodes already updating carry on (and their failures still abort)."""
        return operate(lambda: runner.pause(rollout_id, key.operator))

    @router.post("/{rollout_id}/resume", responses={404: {"model": ApiError}, 409: {"model": ApiError}})
    def resume(rollout_id: RolloutIdPath, key: Operator) -> RolloutView:
        """Dispatch again."""
        return operate(lambda: runner.resume(rollout_id, key.operator))

    @router.post("/{rollout_id}/abort", responses={404: {"model": ApiError}, 409: {"model": ApiError}})
    def abort(
        rollout_id: RolloutIdPath, key: Operator, body: Annotated[AbortRequest | None, Body()] = None
    ) -> RolloutView:
        """Stop for good: waiting nodes are cancelled; nodes past their slot switch finish."""
        return operate(lambda: runner.abort(rollout_id, key.operator, body.reason if body else None))

    @router.post("/{rollout_id}/rollback", responses={404: {"model": ApiError}, 409: {"model": ApiError}})
    def rollback(rollout_id: RolloutIdPath, key: Operator) -> RolloutView:
        """Abort if still running, and send every node that committed the release back to its previous one."""
        return operate(lambda: runner.rollback(rollout_id, key.operator))

    return router
