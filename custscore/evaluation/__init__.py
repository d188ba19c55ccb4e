"""The report of ``custscore evaluate`` (issue 16; docs/evaluation.md).

``models.backtest`` computes the figures; this package turns them into files:

- :mod:`custscore.evaluation.metrics`: the figures as one JSON document (``metrics.json``),
  which everything else is rendered from;
- :mod:`custscore.evaluation.verdict`: the verdict paragraph and the headline table, derived
  from that document by code;
- :mod:`custscore.evaluation.plots`: one matplotlib function per PNG (the optional extra
  ``custscore[report]``);
- :mod:`custscore.evaluation.report`: ``report.md`` and the self-contained ``report.html``;
- :mod:`custscore.evaluation.readme`: rewrites the README's headline table from a
  ``metrics.json`` (``make evaluate``).
"""
