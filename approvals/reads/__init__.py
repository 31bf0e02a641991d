"""What pages, emails and Slack show: read-only views of the rows (queue reads, previews, charts, analytics)."""
