"""PostgreSQL refuses any UPDATE or DELETE of an audit event, except the two
paths the product itself needs:

- sealing: an unsealed event (seq IS NULL) may receive its seq, prev_hash and
  hash once, with every other column unchanged (audit/chain.py);
- retention: DELETE inside a transaction that set countersign.audit_purge
  (audit/retention.py, after archiving and checkpointing).

Other backends rely on the model layer's refusal (audit/models.py).
"""

from django.db import migrations

CONTENT = (
    "id, created_at, actor_kind, actor_id, actor_label, verb, object_type, object_id, "
    "object_label, department_id, agent_id, before, after, context"
)
OLD_CONTENT = ", ".join(f"OLD.{c.strip()}" for c in CONTENT.split(","))
NEW_CONTENT = ", ".join(f"NEW.{c.strip()}" for c in CONTENT.split(","))

CREATE = f"""
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('countersign.audit_purge', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: DELETE of event %% refused', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND ROW({NEW_CONTENT}) IS NOT DISTINCT FROM ROW({OLD_CONTENT}) THEN
        RETURN NEW;  -- sealing
    END IF;
    RAISE EXCEPTION 'audit events are append-only: UPDATE of event %% refused', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();

CREATE OR REPLACE FUNCTION audit_checkpoint_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit checkpoints are append-only: %% refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_checkpoint_append_only
    BEFORE UPDATE OR DELETE ON audit_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_append_only();
DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON audit_auditcheckpoint;
DROP FUNCTION IF EXISTS audit_checkpoint_append_only();
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
