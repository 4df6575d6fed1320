-- goldstream objects and CDC access in ONE source database. Idempotent: safe to rerun after any
-- schema change (new schemas join the publication, new tables get SELECT for the CDC user).
--
-- Run as superuser: `FOR TABLES IN SCHEMA` publications need it.
--   local stack: cdc.stack.ensure_publication(settings, db) (psycopg, `goldstream stack up`)
--   Docker:      infra/postgres/docker-init.sh (psql)
-- Plain SQL on purpose (no psql meta-commands) so both paths run the same file. The CDC role name
-- comes from the session setting goldstream.cdc_user (PGOPTIONS='-c goldstream.cdc_user=debezium'),
-- defaulting to debezium.

CREATE SCHEMA IF NOT EXISTS goldstream;

-- Debezium's heartbeat.action.query upserts here, so an otherwise quiet database still produces
-- WAL that the connector confirms, and the replication slot does not pin old WAL forever.
CREATE TABLE IF NOT EXISTS goldstream.heartbeat (
    id int PRIMARY KEY,
    ts timestamptz NOT NULL DEFAULT now()
);

-- End-to-end readiness probes: a row written here must come out of Kafka and into Delta.
CREATE TABLE IF NOT EXISTS goldstream.sentinel (
    id text PRIMARY KEY,
    ts timestamptz NOT NULL DEFAULT now()
);

DO $goldstream$
DECLARE
    cdc_user text := coalesce(nullif(current_setting('goldstream.cdc_user', true), ''), 'debezium');
    schemas text[];
    missing text[];
    s text;
BEGIN
    -- Every non-system schema: pg_catalog, information_schema, pg_toast and pg_temp_* are excluded.
    SELECT array_agg(nspname ORDER BY nspname) INTO schemas
    FROM pg_namespace
    WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\_%';

    FOREACH s IN ARRAY schemas LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, cdc_user);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', s, cdc_user);
        -- Tables created later by the superuser (schema migrations, demo loaders) are readable too;
        -- Debezium's initial snapshot SELECTs them.
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO %I', s, cdc_user);
    END LOOP;
    EXECUTE format('GRANT INSERT, UPDATE ON goldstream.heartbeat TO %I', cdc_user);

    -- Created here, as superuser; connectors use publication.autocreate.mode=disabled.
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'goldstream_pub') THEN
        EXECUTE 'CREATE PUBLICATION goldstream_pub FOR TABLES IN SCHEMA '
            || (SELECT string_agg(quote_ident(x), ', ') FROM unnest(schemas) AS x);
    ELSIF NOT (SELECT puballtables FROM pg_publication WHERE pubname = 'goldstream_pub') THEN
        SELECT array_agg(x) INTO missing
        FROM unnest(schemas) AS x
        WHERE x NOT IN (
            SELECT n.nspname
            FROM pg_publication_namespace pn
            JOIN pg_publication p ON p.oid = pn.pnpubid
            JOIN pg_namespace n ON n.oid = pn.pnnspid
            WHERE p.pubname = 'goldstream_pub'
        );
        IF missing IS NOT NULL THEN
            EXECUTE 'ALTER PUBLICATION goldstream_pub ADD TABLES IN SCHEMA '
                || (SELECT string_agg(quote_ident(x), ', ') FROM unnest(missing) AS x);
        END IF;
    END IF;
END
$goldstream$;
