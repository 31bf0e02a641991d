"""The demo and the embedded run: the demo organisation, its history, fleet, mail and
target, and beat's stand-in thread."""
