"""Baselines the ELDER paper compares with, each an :class:`elder.editor.Editor`."""
