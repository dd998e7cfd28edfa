#!/bin/sh
# Runs once in the primary container's first start (docker-entrypoint-initdb.d):
# replication access for the replica, and the application role (not the table owner).
set -e
echo "host replication replicator all trust" >> "$PGDATA/pg_hba.conf"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE replicator WITH REPLICATION LOGIN;
CREATE ROLE storefront_app LOGIN;
SQL
