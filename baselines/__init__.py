"""Baselines the ELDER paper compares with, each behind the :class:`elder.editor.Editor` interface."""
