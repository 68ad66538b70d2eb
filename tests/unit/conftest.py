"""Unit tests of the core: when a test fails, print the command and event log of every instance it ran."""

from __future__ import annotations

import pytest

from tests.unit import harness


@pytest.fixture(autouse=True)
def _forget_harnesses():
    harness.LIVE_HARNESSES.clear()
    yield
    harness.LIVE_HARNESSES.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        for number, h in enumerate(harness.LIVE_HARNESSES, start=1):
            report.sections.append((f"flowline instance log {number}", h.log_text()))
    return report
