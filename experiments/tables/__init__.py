"""``make tables``: the paper's tables and figures from ``results/runs.csv`` and the run folders.

``runs`` reads rows and matches them to cell specs, ``cells`` aggregates a cell over seeds,
``paper`` reads the paper's own numbers (``paper.yaml``), ``render`` writes Markdown and LaTeX,
``edit_tables`` / ``retention_tables`` build the tables, ``figures`` the PNGs and ``build``
writes everything (``python -m experiments.tables``).
"""
