"""The audit trail on PostgreSQL: deleting only through the retention job's
own function, TRUNCATE refused, checkpoints written only by that function.

- `audit_purge(purge_before, first_seq, last_seq, archive_path, archive_digest)` is the
  one way to delete events. It refuses anything younger than 90 days (the
  product's floor; AUDIT_RETENTION_DAYS can only lengthen it), anything but
  the whole prefix of the chain right after the last checkpoint, and a purge
  without an archive digest; it deletes the events and writes the checkpoint
  (boundary seq and hash, count, archive and its sha256) in one go.
- The row triggers tell that function's statements from any other by the
  call stack PostgreSQL reports (PG_CONTEXT): the statement that fired them
  must be exactly the function's own, run by `<schema>.audit_purge(...)`
  itself. The function pins its search_path, so its name is always reported
  schema-qualified; a same-named function elsewhere (pg_temp, another
  schema), a DO block or a plain statement cannot pass for it. No setting a
  session may SET opens the way any more (countersign.audit_purge is gone).
- TRUNCATE of either table is refused by a statement-level trigger.

Limits: a role that owns these tables or the function (or a superuser) can
drop or disable the triggers or replace the function. That is what the
hourly witness anchors and `verify_audit` are for (docs/audit.md).

Other backends rely on the model layer's refusal (audit/models.py).
"""

from django.db import migrations, models

CONTENT = (
    "id, created_at, actor_kind, actor_id, actor_label, verb, object_type, object_id, "
    "object_label, department_id, agent_id, before, after, context"
)
OLD_CONTENT = ", ".join(f"OLD.{c.strip()}" for c in CONTENT.split(","))
NEW_CONTENT = ", ".join(f"NEW.{c.strip()}" for c in CONTENT.split(","))
SEAL_LOCK_ID = 0x43534155  # audit/chain.py: purging and sealing never overlap
FLOOR_DAYS = 90  # settings.AUDIT_RETENTION_DAYS is never under this either

# Each on one line: PG_CONTEXT quotes the statement verbatim, and the triggers
# compare it with these.
DELETE_STATEMENT = "DELETE FROM {schema}.audit_auditevent WHERE seq >= first_seq AND seq <= last_seq"
INSERT_STATEMENT = (
    "INSERT INTO {schema}.audit_auditcheckpoint (seq, hash, purged_count, archive, archive_sha256, created_at) "
    "VALUES (last_seq, boundary_hash, purged, archive_path, archive_digest, now())"
)
SIGNATURE = "{schema}.audit_purge(timestamp with time zone,bigint,bigint,text,text)"


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


CREATE = """
-- Is the statement that fired a trigger exactly `statement`, run by the purge
-- function itself? `stack` is the trigger's PG_CONTEXT: its own line, then
--     <SQL statement> "<the statement>"
--     <PL/pgSQL function> <signature> <line N at SQL statement>
-- (the words around the quotes and the signature depend on lc_messages, so
-- only the quoted statement and the signature are compared). A statement's
-- text may hold quotes and newlines, but then it is not exactly ours.
CREATE OR REPLACE FUNCTION {schema}.audit_run_by_purge(stack text, statement text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    rest text;
    quote_at integer;
    caller text;
    signature constant text := {signature};
    at integer;
BEGIN
    rest := substr(stack, strpos(stack, E'\\n') + 1);
    quote_at := strpos(rest, '"');
    IF quote_at = 0 OR strpos(left(rest, quote_at), E'\\n') > 0 THEN
        RETURN false;
    END IF;
    IF substr(rest, quote_at + 1, length(statement) + 2) <> statement || '"' || E'\\n' THEN
        RETURN false;
    END IF;
    caller := split_part(substr(rest, quote_at + length(statement) + 3), E'\\n', 1);
    at := strpos(caller, signature);
    RETURN at > 0
        AND strpos(caller, '"') = 0
        AND (at = 1 OR substr(caller, at - 1, 1) !~ '[[:alnum:]_$]');
END;
$$;

CREATE OR REPLACE FUNCTION {schema}.audit_event_append_only() RETURNS trigger AS $$
DECLARE
    stack text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        GET DIAGNOSTICS stack = PG_CONTEXT;
        IF {schema}.audit_run_by_purge(stack, {delete_statement}) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: DELETE of event %% (seq %%) refused; '
            'only audit_purge() deletes, and only events past retention', OLD.id, OLD.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND ROW({new_content}) IS NOT DISTINCT FROM ROW({old_content}) THEN
        RETURN NEW;  -- sealing
    END IF;
    RAISE EXCEPTION 'audit events are append-only: UPDATE of event %% (seq %%) refused', OLD.id, OLD.seq
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION {schema}.audit_checkpoint_append_only() RETURNS trigger AS $$
DECLARE
    stack text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        GET DIAGNOSTICS stack = PG_CONTEXT;
        IF {schema}.audit_run_by_purge(stack, {insert_statement}) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit checkpoints are written only by audit_purge(): INSERT of checkpoint at seq %% refused',
            NEW.seq USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RAISE EXCEPTION 'audit checkpoints are append-only: %% refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON {schema}.audit_auditcheckpoint;
CREATE TRIGGER audit_checkpoint_append_only
    BEFORE INSERT OR UPDATE OR DELETE ON {schema}.audit_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION {schema}.audit_checkpoint_append_only();

CREATE OR REPLACE FUNCTION {schema}.audit_refuse_truncate() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: TRUNCATE of %% refused', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_event_no_truncate
    BEFORE TRUNCATE ON {schema}.audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_refuse_truncate();
CREATE TRIGGER audit_checkpoint_no_truncate
    BEFORE TRUNCATE ON {schema}.audit_auditcheckpoint
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_refuse_truncate();

-- The retention job's purge: checks, deletes the prefix, writes the checkpoint.
-- Returns the checkpoint's id.
CREATE OR REPLACE FUNCTION {schema}.audit_purge(
    purge_before timestamptz, first_seq bigint, last_seq bigint, archive_path text, archive_digest text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    after_seq bigint;
    present bigint;
    youngest_seq bigint;
    boundary_hash text;
    purged bigint;
    checkpoint_id bigint;
BEGIN
    IF purge_before IS NULL OR purge_before > now() - interval '{floor_days} days' THEN
        RAISE EXCEPTION 'audit_purge: events younger than {floor_days} days are never purged (asked: before %%)',
            purge_before
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF archive_digest IS NULL OR archive_digest !~ '^[0-9a-f]{{64}}$' OR coalesce(archive_path, '') = '' THEN
        RAISE EXCEPTION 'audit_purge: a purge needs its archive and the archive''s sha256'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    PERFORM pg_advisory_xact_lock({seal_lock_id});  -- no sealing, no other purge meanwhile
    SELECT coalesce(max(seq), 0) INTO after_seq FROM {schema}.audit_auditcheckpoint;
    IF first_seq IS DISTINCT FROM after_seq + 1 OR last_seq IS NULL OR last_seq < first_seq THEN
        RAISE EXCEPTION 'audit_purge: only the prefix right after the last checkpoint (seq %%) may be purged, '
            'not seq %% to %%', after_seq, first_seq, last_seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT count(*) INTO present FROM {schema}.audit_auditevent WHERE seq >= first_seq AND seq <= last_seq;
    IF present <> last_seq - first_seq + 1 THEN
        RAISE EXCEPTION 'audit_purge: events seq %% to %% are not all present (%% of them are): the chain is broken',
            first_seq, last_seq, present USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT min(seq) INTO youngest_seq FROM {schema}.audit_auditevent
        WHERE seq >= first_seq AND seq <= last_seq AND created_at >= purge_before;
    IF youngest_seq IS NOT NULL THEN
        RAISE EXCEPTION 'audit_purge: event seq %% is not older than %%: refused', youngest_seq, purge_before
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT hash INTO boundary_hash FROM {schema}.audit_auditevent WHERE seq = last_seq;
    {delete_statement_sql};
    GET DIAGNOSTICS purged = ROW_COUNT;
    {insert_statement_sql};
    SELECT id INTO checkpoint_id FROM {schema}.audit_auditcheckpoint WHERE seq = last_seq;
    RETURN checkpoint_id;
END;
$$;
-- Not for every role of the cluster: the owner (who migrates) may run it;
-- grant EXECUTE to the application's role when it is another one.
REVOKE ALL ON FUNCTION {schema}.audit_purge(timestamptz, bigint, bigint, text, text) FROM PUBLIC;
"""

# Back to 0002's triggers (which honoured countersign.audit_purge).
DROP = """
DROP FUNCTION IF EXISTS {schema}.audit_purge(timestamptz, bigint, bigint, text, text);
DROP TRIGGER IF EXISTS audit_event_no_truncate ON {schema}.audit_auditevent;
DROP TRIGGER IF EXISTS audit_checkpoint_no_truncate ON {schema}.audit_auditcheckpoint;
DROP FUNCTION IF EXISTS {schema}.audit_refuse_truncate();
DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON {schema}.audit_auditcheckpoint;
CREATE TRIGGER audit_checkpoint_append_only
    BEFORE UPDATE OR DELETE ON {schema}.audit_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION {schema}.audit_checkpoint_append_only();
CREATE OR REPLACE FUNCTION {schema}.audit_event_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('countersign.audit_purge', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: DELETE of event %% refused', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND ROW({new_content}) IS NOT DISTINCT FROM ROW({old_content}) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: UPDATE of event %% refused', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
DROP FUNCTION IF EXISTS {schema}.audit_run_by_purge(text, text);
"""


def _schema(schema_editor) -> str:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT quote_ident(current_schema())")
        return cursor.fetchone()[0]


def _render(template: str, schema: str) -> str:
    delete_statement = DELETE_STATEMENT.format(schema=schema)
    insert_statement = INSERT_STATEMENT.format(schema=schema)
    return template.format(
        schema=schema,
        signature=_sql_literal(SIGNATURE.format(schema=schema)),
        delete_statement=_sql_literal(delete_statement),
        insert_statement=_sql_literal(insert_statement),
        delete_statement_sql=delete_statement,
        insert_statement_sql=insert_statement,
        new_content=NEW_CONTENT,
        old_content=OLD_CONTENT,
        seal_lock_id=SEAL_LOCK_ID,
        floor_days=FLOOR_DAYS,
    )


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_render(CREATE, _schema(schema_editor)))


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_render(DROP, _schema(schema_editor)))


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers")]

    operations = [
        migrations.AddField(
            model_name="auditcheckpoint",
            name="archive_sha256",
            field=models.CharField(
                blank=True, help_text="sha256 of the archive file, as written by the retention job.", max_length=64
            ),
        ),
        migrations.RunPython(create, drop),
    ]
