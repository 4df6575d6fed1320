-- Creates the four demo source databases. For docker-entrypoint-initdb.d (run by psql against
-- POSTGRES_DB before the per-system scripts); the local stack does not apply this file, it creates the
-- databases itself. `\gexec` runs CREATE DATABASE only for those that do not exist yet, so running it
-- again (or against a cluster that already has them) is harmless.
SELECT format('CREATE DATABASE %I', name)
FROM unnest(ARRAY['crm', 'erp', 'shop', 'billing']) AS name
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = name)
\gexec
