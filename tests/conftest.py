"""Test-suite wiring: registers the shared fixture plugins.

The embedded-stack fixtures (``embedded_stack``, ``kafka_bootstrap``, ``redis_url``,
``redis_client``, ``make_topic``) start the real broker and Valkey only when a test
asks for one of them; tests that use them are marked ``integration`` automatically.
"""

from __future__ import annotations

pytest_plugins = ("fixtures.stack", "fixtures.evaluation")
