"""Carrying approved actions out: the webhook executor, the breaker, decision callbacks and the sweep's findings."""
