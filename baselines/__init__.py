"""Baselines the ELDER paper compares with, each behind the elder.editor.Editor interface."""
