#!/usr/bin/env bash
# Make PostgreSQL and Redis reachable on 127.0.0.1 for the production-mode tests: start them if
# they are installed and stopped, install them with apt-get if they are missing. With
# --node-only, install Node.js and npm (for the OIDC provider of the login tests) if missing. Under CI=true a
# service that still cannot be reached is a failure, never a silent skip.
set -u
PGHOST=${PARLEY_TEST_PG_HOST:-127.0.0.1}
PGPORT=${PARLEY_TEST_PG_PORT:-5432}
REDIS_PORT=${PARLEY_TEST_REDIS_PORT:-6379}

log() { echo "ensure_services: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

pg_up() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; }
redis_up() {
  if command -v redis-cli >/dev/null; then redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG
  else (exec 3<>/dev/tcp/127.0.0.1/"$REDIS_PORT") 2>/dev/null; fi
}

apt_install() {
  log "installing $* with apt-get"
  as_root apt-get update -qq >/dev/null 2>&1 || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql postgresql-client
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  # Tests connect as postgres over TCP without a password, as on the developer machines.
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q "parley-tests" "$hba" 2>/dev/null; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust # parley-tests\nhost all all ::1/128 trust # parley-tests' "$hba" || true
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
    || as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
}

start_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/parley-tests.log
}

wait_for() {
  local check=$1 i
  for i in $(seq 1 30); do "$check" && return 0; sleep 1; done
  return 1
}

if [ "${1:-}" = "--node-only" ]; then
  command -v npm >/dev/null || apt_install nodejs npm
  exit 0
fi

command -v pg_isready >/dev/null || apt_install postgresql-client
pg_up || { start_postgres; wait_for pg_up; }
redis_up || { start_redis; wait_for redis_up; }

status=0
pg_up || { log "PostgreSQL is not reachable on $PGHOST:$PGPORT"; status=1; }
redis_up || { log "Redis is not reachable on 127.0.0.1:$REDIS_PORT"; status=1; }
if [ "$status" != 0 ] && [ "${CI:-}" = "true" ]; then
  log "CI=true: the production-mode tests need both services; failing."
  exit 1
fi
exit 0
