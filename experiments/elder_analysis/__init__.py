"""Analyses of ELDER runs only: how its routers route and where its allocation codes lie."""
