"""The lead pages and the live queue: views, URL confs, websocket consumers and the fan-out."""
