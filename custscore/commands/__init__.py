"""Sub-commands of the ``custscore`` CLI; each module has ``register(parser)``."""
