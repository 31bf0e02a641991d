"""The admin of approvals, by concept. Django's autodiscovery imports this
package; importing each module registers its admins. Every edit of
configuration is audited (audit.admin.AuditedAdminMixin); what the services
write is shown read-only."""

from __future__ import annotations

from approvals.admin import actions, autonomy, monitoring, organisation, people, switches

__all__ = ["actions", "autonomy", "monitoring", "organisation", "people", "switches"]
