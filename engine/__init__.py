"""Pure computation for custscore: state record, numba kernels, scores and segment rules.

Nothing here imports Kafka, Redis or asyncio: arrays in, arrays out.
"""

from __future__ import annotations
