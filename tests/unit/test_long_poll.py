"""Issue 15: the engine's consumers long-poll. A fetch that finds nothing waits at the broker (which answers
as soon as one byte arrives) instead of the client asking again every 10 ms, which kept the broker busy on
an idle stack. The wait comes from EngineSettings and reaches every transactional worker."""

from __future__ import annotations

from streams.app import Engine
from streams.settings import EngineSettings


def test_the_engine_long_polls_by_default_and_the_setting_reaches_its_workers(monkeypatch):
    monkeypatch.delenv("FLOWLINE_ENGINE_FETCH_WAIT_MS", raising=False)
    assert EngineSettings().fetch_wait_ms >= 100
    monkeypatch.setenv("FLOWLINE_ENGINE_FETCH_WAIT_MS", "321")
    engine = Engine(EngineSettings())
    worker = engine._worker("processor", ["workflow.commands"], engine.processor)
    assert worker.fetch_wait_ms == 321
