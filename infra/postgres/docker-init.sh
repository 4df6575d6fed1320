#!/usr/bin/env bash
# First-start initialisation of the postgres:15 container (docker-compose.yml mounts this into
# /docker-entrypoint-initdb.d). Mirrors what `goldstream stack up` does for the local cluster:
# the CDC role, one database per source system, the demo schema of each system, and
# infra/postgres/goldstream.sql (goldstream schema, grants, publication) - the same SQL file.
set -euo pipefail

: "${GOLDSTREAM_DATABASES:=crm erp shop billing}"
: "${GOLDSTREAM_CDC_USER:=debezium}"
: "${GOLDSTREAM_DB_PASSWORD:?GOLDSTREAM_DB_PASSWORD must be set for the postgres service}"
demo_dir=${GOLDSTREAM_DEMO_DIR:-/goldstream/demo}
sql_dir=${GOLDSTREAM_SQL_DIR:-/goldstream/postgres}

psql_su() { psql -v ON_ERROR_STOP=1 -X -q --username "$POSTGRES_USER" "$@"; }

# The password travels through psql's \getenv, never through the command line.
psql_su --dbname postgres -v cdc_user="$GOLDSTREAM_CDC_USER" <<'SQL'
\getenv cdc_password GOLDSTREAM_DB_PASSWORD
SELECT format('CREATE ROLE %I', :'cdc_user')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'cdc_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN REPLICATION PASSWORD %L', :'cdc_user', :'cdc_password') \gexec
SQL

for db in $GOLDSTREAM_DATABASES; do
  echo "goldstream: database $db"
  psql_su --dbname postgres -c "CREATE DATABASE \"$db\""
  if [ -f "$demo_dir/$db/schema.sql" ]; then
    psql_su --dbname "$db" -f "$demo_dir/$db/schema.sql"
  fi
  PGOPTIONS="-c goldstream.cdc_user=$GOLDSTREAM_CDC_USER" psql_su --dbname "$db" -f "$sql_dir/goldstream.sql"
done

# The image's pg_hba.conf allows `host all all all` but that line does not match replication
# connections; Debezium (in the connect container) needs one. Read at the final server start.
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
