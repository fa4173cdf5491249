"""Run a real :class:`~node_agent.agent.Agent` on its own event loop thread, as the process would."""

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from node_agent.agent import Agent

T = TypeVar("T")


class AgentThread:
    """Starts ``agent.run()`` in a background thread with its own loop; :meth:`stop` cancels and closes it."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task[object] | None = None
        self._started = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._main, name=f"agent-{agent.node_id}", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._task = self.loop.create_task(self.agent.run())
        self._started.set()
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self._task)
        self.loop.close()

    def start(self) -> "AgentThread":
        """Start the loop and wait until the agent's task exists."""
        self._thread.start()
        self._started.wait(5)
        return self

    def call(self, fn: Callable[[], T], timeout_s: float = 5.0) -> T:
        """Run ``fn`` on the agent's loop thread and return its result."""
        return asyncio.run_coroutine_threadsafe(_call(fn), self.loop).result(timeout_s)

    def await_(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        """Run ``coroutine`` on the agent's loop and return its result (e.g. ``agent.enter_code(...)``)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def halt(self) -> None:
        """Cancel the agent and wait for its thread, leaving stores and hardware open for inspection."""
        if self._task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)

    def stop(self) -> None:
        """Cancel the agent, wait for its thread, close its stores and hardware (once)."""
        self.halt()
        if not self._closed:
            self._closed = True
            self.agent.close()


async def _call(fn: Callable[[], T]) -> T:
    return fn()


AgentFactory = Callable[..., AgentThread]
"""The ``start_agent`` fixture: start an agent against the test broker (node id, hardware, data dir, settings)."""
