"""A background job of a service that runs one pass every few seconds: saga recovery, the
reconcilers, the expired-hold sweep.

A pass that fails is logged and tried again on the next tick, so a busy database or a dependency
that is down for a while never ends the job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bookline.domain.errors import BooklineError

log = logging.getLogger("bookline.background")


class Periodic:
    def __init__(self, name: str, interval_s: float, run_once: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval_s = interval_s
        self.run_once = run_once
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()  # every pass is idempotent: an interrupted one is done again later
        await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_once()
            except BooklineError as exc:
                # a dependency down for a while (the gateway, notification-service): one line a tick,
                # not a traceback every few seconds
                log.warning("%s: a pass failed, trying again: %s", self.name, exc.message)
            except Exception:  # noqa: BLE001 - tried again on the next tick
                log.exception("%s: a pass failed", self.name)
