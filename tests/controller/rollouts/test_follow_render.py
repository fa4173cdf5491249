"""What ``lockerfleet rollout follow`` draws: the progress line, the outcome in plain words, redraws on a terminal."""

import io
from typing import Any

import httpx

from controller.rollouts.cli import follow, outcome, render


def view(phase: str = "running", **totals: int) -> dict[str, Any]:
    return {
        "rollout_id": "ro-1",
        "release_version": "1.5.0",
        "phase": phase,
        "finished": phase not in {"running", "paused"},
        "current_wave": 1,
        "nodes": 10,
        "waves": [{"size": 1}, {"size": 2}, {"size": 7}],
        "totals": totals,
        "abort_reason": "wave 1: 2 of 2 nodes failed, above its failure threshold" if phase == "aborted" else None,
    }


def test_the_line_counts_succeeded_updating_waiting_and_failed_nodes() -> None:
    line = render(view(succeeded=5, downloading=1, dispatched=1, queued=1, deferred=1, timed_out=1))
    assert line == (
        "ro-1 1.5.0 [###############---------------] 5/10 succeeded, 2 updating, 2 waiting, 1 failed; wave 2/3; running"
    )


def test_an_aborted_rollout_says_why_what_ran_and_how_to_go_back() -> None:
    text = outcome(
        view("aborted", succeeded=1, failed=1, rolled_back=1, cancelled=7),
        [{"node_id": "n2", "site": "b", "state": "rolled_back", "reason": "health_check_failed"}],
    )
    first, second = text.splitlines()
    assert first == (
        "Rollout ro-1 stopped: wave 1: 2 of 2 nodes failed, above its failure threshold. 1 of 10 nodes run 1.5.0, "
        "2 failed, 7 were not updated. To send the updated nodes back: lockerfleet rollout rollback --rollout-id ro-1"
    )
    assert second == "  n2 (site b): rolled_back, health_check_failed"


def test_a_completed_rollout_with_failures_within_thresholds_says_so() -> None:
    assert outcome(view("completed", succeeded=9, timed_out=1), []) == (
        "Rollout ro-1 completed: 9 of 10 nodes now run 1.5.0; 1 failed (within the thresholds)."
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_redrawn_in_place_and_an_abort_exits_1() -> None:
    answers = iter([view(queued=10), view(downloading=1, queued=9), view("aborted", failed=1, cancelled=9)])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/nodes"):
            assert request.url.query == b"state=failed&state=rolled_back&state=timed_out"
            return httpx.Response(200, json=[{"node_id": "n1", "site": "a", "state": "failed", "reason": None}])
        return httpx.Response(200, json=next(answers))

    out = Terminal()
    client = httpx.Client(base_url="http://controller", transport=httpx.MockTransport(handler))
    assert follow(client, "ro-1", 1.0, out, sleep=lambda _s: None) == 1
    text = out.getvalue()
    assert text.count("\r") == 3 and text.count("\x1b[K") == 3
    assert text.endswith("  n1 (site a): failed, no reason given\n")
