"""Entry module for ``faust -A streams.app worker``: the app built from the environment.

This is a process entry point, so it is where settings are read (``CUSTSCORE_*`` and the
optional TOML file); everything below receives them as arguments.
"""

from __future__ import annotations

from config.settings import load_settings
from streams.worker import create_app

settings = load_settings()
app = create_app(settings)
