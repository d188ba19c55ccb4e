"""Baseline (a): a bare Faust pass-through agent on custscore's input topics — the Faust ceiling.

    CUSTSCORE_... python -m loadtest.worker_passthrough

Same app settings as the custscore worker (loadtest.baseline_kit.FAUST_CONF_KEYS), same source
topic (the three input topics, raw bytes), same ``take_events(batch_size, within)`` batching,
the same acknowledgement and offset commits by Faust — and no work at all: each batch is
counted and dropped. Whatever custscore spends beyond this is its own cost.
"""

from __future__ import annotations

from typing import Any

from loadtest.baseline_kit import faust_baseline, run_faust_worker

__all__ = ["build_app", "main"]


def build_app(settings: Any) -> Any:
    """The pass-through Faust app for ``settings`` (app id = consumer group)."""
    base = faust_baseline(settings)
    counters = base.counters

    @base.app.agent(base.source)  # type: ignore[untyped-decorator]
    async def pass_through(stream: Any) -> None:
        batches = stream.take_events(settings.batch_size, within=settings.batch_within_s)
        async for events in batches:
            counters.batches_started += 1
            counters.done(len(events), len(events))
            counters.batches_done += 1

    return base.app


def main() -> None:
    run_faust_worker(build_app)


if __name__ == "__main__":
    main()
