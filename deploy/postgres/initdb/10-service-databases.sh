#!/usr/bin/env bash
# One database per service, each owned by a role of the same name, so a service
# cannot read another's tables. The postgres image runs this once, on the first
# start with an empty data volume.
set -euo pipefail
: "${DATABASE_PASSWORD:?set DATABASE_PASSWORD (see .env.example)}"

for service in feedback expectations commitments notifications customers; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=service="$service" --set=password="$DATABASE_PASSWORD" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
SQL
done
