"""The bench's poller: what a sample says when a worker does not answer its scrape."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import psutil

from loadtest.probes import Poller, window_bounds

ANSWER = """\
custscore_events_in_total{topic="customer.purchase"} 1200.0
custscore_events_in_total{topic="customer.visit"} 300.0
custscore_state_writes_total 1400.0
"""


class _Watch:
    def __init__(self, answers: list[str | None]) -> None:
        self.answers = answers

    def metrics_text(self, timeout_s: float = 2.0) -> str | None:
        return self.answers.pop(0)


def test_an_unanswered_scrape_keeps_the_last_counters_and_the_run_window() -> None:
    me = psutil.Process(os.getpid())
    worker: Any = SimpleNamespace(pid=os.getpid(), watch=_Watch([ANSWER, None]), ps=me)
    poller = Poller([worker], {"broker": os.getpid(), "redis": os.getpid()}, interval=1.0)
    answered = poller.sample()
    silent = poller.sample()  # e.g. the worker stopping after the run
    assert (answered.events_in, answered.state_writes) == (1500, 1400)
    assert (silent.events_in, silent.state_writes) == (1500, 1400)
    first, last = window_bounds([answered, silent], start=answered.t - 5.0)
    assert last - first >= 5.0  # the last write is not placed before the start


def test_a_worker_that_never_answered_counts_nothing() -> None:
    me = psutil.Process(os.getpid())
    worker: Any = SimpleNamespace(pid=os.getpid(), watch=_Watch([None]), ps=me)
    poller = Poller([worker], {"broker": os.getpid(), "redis": os.getpid()}, interval=1.0)
    s = poller.sample()
    assert (s.events_in, s.state_writes, s.alerts) == (0, 0, 0)
