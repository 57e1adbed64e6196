"""``make tables``: the paper's tables and figures from ``results/runs.csv`` and the run folders.

``runs`` joins each row of ``runs.csv`` with its run folder's ``config.yaml`` and matches runs to
cell specs on their resolved configs, ``cells`` aggregates a cell over seeds (pandas), ``paper``
reads the paper's own numbers (``paper.yaml``), ``render`` writes Markdown and LaTeX,
``edit_tables`` / ``retention_tables`` build the tables, ``figures`` the PNGs and ``build``
writes everything (``python -m experiments.tables``).
"""
