"""Earned autonomy: trust metrics and the tier changes they lead to."""
