"""Baseline (a): a bare Faust pass-through agent on custscore's input topics — the Faust ceiling.

    CUSTSCORE_... python -m loadtest.worker_passthrough

Same app settings as the custscore worker (loadtest._workerkit.FAUST_CONF_KEYS), same source
topic (the three input topics, raw bytes), same ``take_events(batch_size, within)`` batching,
the same acknowledgement and offset commits by Faust — and no work at all: each batch is
counted and dropped. Whatever custscore spends beyond this is its own cost.
"""

from __future__ import annotations

import logging
from typing import Any

from loadtest._workerkit import Counters, add_views, faust_app_like_custscore, settings_from_env

__all__ = ["build_app", "main"]


def build_app(settings: Any) -> Any:
    """The pass-through Faust app for ``settings`` (app id = consumer group)."""
    app = faust_app_like_custscore(settings, settings.app_id)
    counters = Counters()
    kinds = {
        settings.topic_purchase: "purchase",
        settings.topic_visit: "visit",
        settings.topic_complaint: "complaint",
    }
    source = app.topic(*kinds, key_type=bytes, value_type=bytes, partitions=settings.partitions)

    def owned() -> list[int]:
        return sorted(
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == settings.topic_purchase
        )

    @app.agent(source)  # type: ignore[untyped-decorator]
    async def pass_through(stream: Any) -> None:
        batches = stream.take_events(settings.batch_size, within=settings.batch_within_s)
        async for events in batches:
            counters.batches_started += 1
            counters.done(len(events), len(events))
            counters.batches_done += 1

    add_views(app, counters, owned)
    return app


def main() -> None:
    import faust

    settings = settings_from_env()
    app = build_app(settings)
    logging.getLogger("faust").setLevel(logging.WARNING)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
