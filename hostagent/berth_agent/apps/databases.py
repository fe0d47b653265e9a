"""The root filesystem of berth's database images: Debian's PostgreSQL 15 and Redis 7,
with their clients and benchmarks (psql, pgbench, pg_amcheck, redis-cli,
redis-benchmark), and the two entry scripts. One debootstrap serves both images."""

from __future__ import annotations

from berth_agent.runtime.debian_images import RootfsRecipe

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POSTGRES_ENTRY = "/usr/local/bin/berth-postgres"
POSTGRES_BIN = "/usr/lib/postgresql/15/bin"
POSTGRES_DATA = "/var/lib/postgresql/data"

# initdb on the first start (data in a volume of the repository, so it moves with it),
# then postgres as the postgres user; trust on the network: a test workload, reached only
# from the lab's own hosts.
_POSTGRES = f"""#!/bin/sh
set -eu
PGDATA="${{PGDATA:-{POSTGRES_DATA}}}"
as_postgres() {{ setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }}
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  as_postgres {POSTGRES_BIN}/initdb -D "$PGDATA" -U postgres --auth=trust -E UTF8 \\
    --locale=C.UTF-8 >/dev/null
  printf "listen_addresses = '*'\\nunix_socket_directories = '/run/postgresql'\\n" \\
    >>"$PGDATA/postgresql.conf"
  echo "host all all all trust" >>"$PGDATA/pg_hba.conf"
  echo "berth-postgres: initialised $PGDATA"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups {POSTGRES_BIN}/postgres -D "$PGDATA"
"""

REDIS_ENTRY = "/usr/local/bin/berth-redis"
REDIS_DATA = "/data"

# Every write in the append-only file and fsynced before Redis answers it.
_REDIS = f"""#!/bin/sh
set -eu
mkdir -p {REDIS_DATA}
exec redis-server --bind 0.0.0.0 --protected-mode no --port "${{REDIS_PORT:-6379}}" \\
  --dir {REDIS_DATA} --appendonly yes --appendfsync always --save "" --daemonize no
"""

RECIPE = RootfsRecipe(
    name="databases",
    packages=("postgresql", "postgresql-contrib", "redis-server", "redis-tools", "tini"),
    files=((POSTGRES_ENTRY, _POSTGRES), (REDIS_ENTRY, _REDIS)),
)
