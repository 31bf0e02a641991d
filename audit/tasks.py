from __future__ import annotations

from celery import shared_task

from audit import chain, retention, witness


@shared_task
def seal_audit_chain() -> int:
    """Seal what a crashed process left unsealed; normally there is nothing."""
    return chain.seal_all()


@shared_task
def enforce_audit_retention() -> int:
    result = retention.purge_expired()
    return result.purged if result else 0


@shared_task
def send_audit_anchor() -> int:
    """Send the chain's head to the witnesses (AUDIT_WITNESS); returns its seq."""
    anchor = witness.send_head()
    return anchor.seq if anchor else 0
