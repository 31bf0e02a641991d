"""Telling people: emails, one-click decision links, Slack."""
