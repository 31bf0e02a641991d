"""Watching the gateway: detectors, alerts and their delivery, health, heartbeats, Prometheus metrics."""
