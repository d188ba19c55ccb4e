"""``python -m custscore`` runs the command line."""

from __future__ import annotations

import sys

from custscore.cli import main

sys.exit(main())
