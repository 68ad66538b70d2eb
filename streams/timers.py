"""Per-partition index of due timers, derived from the instance states the worker holds.

The states are the truth (`InstanceState.timers`); this heap only says where to look first. Entries are
checked against the current state when they come due, so a timer that was cancelled, re-armed, paused or
already fired is simply dropped. A fired timer is re-queued a few seconds out in case its FireTimer
command is lost; the core rejects a duplicate, so the retry is safe.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from core.state import InstanceState

REFIRE_AFTER_MS = 5_000


class TimerIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str, str]] = []
        self._queued: set[tuple[str, int]] = set()

    def __len__(self) -> int:
        return len(self._heap)

    def track(self, state: InstanceState) -> None:
        for timer in state.armed_timers():
            entry = (timer.timer_id, timer.fire_at)
            if entry not in self._queued:
                self._queued.add(entry)
                heapq.heappush(self._heap, (timer.fire_at, timer.timer_id, state.instance_id))

    def due(self, now_ms: int, states: dict[str, InstanceState]) -> Iterator[tuple[str, str, int]]:
        """Yield (instance_id, timer_id, fire_at) for every armed timer due by `now_ms`."""
        heap = self._heap
        refire: list[tuple[int, str, str]] = []
        while heap and heap[0][0] <= now_ms:
            fire_at, timer_id, instance_id = heapq.heappop(heap)
            state = states.get(instance_id)
            timer = state.timer(timer_id) if state is not None else None
            self._queued.discard((timer_id, fire_at))
            if timer is None or timer not in state.armed_timers():  # type: ignore[union-attr]
                continue
            yield instance_id, timer_id, timer.fire_at
            refire.append((now_ms + REFIRE_AFTER_MS, timer_id, instance_id))
        for entry in refire:
            if (entry[1], entry[0]) not in self._queued:
                self._queued.add((entry[1], entry[0]))
                heapq.heappush(heap, entry)
