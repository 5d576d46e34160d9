#!/usr/bin/env bash
# Runs a command with a throw-away PostgreSQL 15 server, then stops the server and removes it:
#
#   tests/testlib/with_postgres.sh [--tcp] CMD [ARG...]
#
# The server lives in a new temporary directory (data, log and Unix socket) and listens on that
# socket only; --tcp also makes it listen on 127.0.0.1, on a free port. It trusts every local
# connection (initdb -A trust) and runs without fsync: it is for tests only (with
# MTE_POSTGRES_DURABLE=1 it keeps PostgreSQL's durable defaults, for benchmarks; put TMPDIR on a
# real disk then). Nothing is created in
# it but the cluster itself (databases postgres, template0 and template1; superuser postgres).
# CMD runs with these variables set:
#   MTE_TEST_POSTGRES_URI      postgresql:///postgres?host=<dir>&port=<port>&user=postgres
#   MTE_TEST_POSTGRES_TCP_URI  postgresql://postgres@127.0.0.1:<port>/postgres (with --tcp only)
#   MTE_TEST_POSTGRES_DIR      the socket directory (also PGHOST), PGPORT and PGUSER for psql
# The script exits with CMD's status, or with 2 when the server cannot be set up (the reason is
# printed, with the server's log). The server is stopped and the directory removed however CMD
# ends, also when the script itself is interrupted.
#
# As root, the server runs as the `postgres` account (initdb refuses to run as root) through
# runuser; as any other user, as that user. PostgreSQL 15 is looked for in
# /usr/lib/postgresql/15/bin, or in $MTE_POSTGRES_BINDIR when that is set.
set -euo pipefail

usage() {
  echo "usage: with_postgres.sh [--tcp] CMD [ARG...]" >&2
  exit 2
}

fail() {
  echo "with_postgres.sh: $*" >&2
  if [[ -n "${pg_dir:-}" && -f "$pg_dir/server.log" ]]; then
    echo "with_postgres.sh: the server's log:" >&2
    sed 's/^/  /' "$pg_dir/server.log" >&2 || true
  fi
  exit 2
}

tcp=0
if [[ "${1:-}" == "--tcp" ]]; then
  tcp=1
  shift
fi
[[ $# -ge 1 ]] || usage

bindir=${MTE_POSTGRES_BINDIR:-/usr/lib/postgresql/15/bin}
for tool in initdb pg_ctl postgres; do
  if [[ ! -x "$bindir/$tool" ]]; then
    fail "PostgreSQL 15 is not installed: no $bindir/$tool (on Debian 12: apt-get install" \
      "postgresql-15, or run tools/install-deps.sh --test; elsewhere set MTE_POSTGRES_BINDIR)"
  fi
done

# The server's own account: initdb and postgres refuse to run as root.
as_server=()
if [[ $(id -u) -eq 0 ]]; then
  id -u postgres >/dev/null 2>&1 ||
    fail "running as root, but there is no 'postgres' account to run the server as" \
      "(the postgresql-15 package creates it)"
  command -v runuser >/dev/null || fail "running as root, but runuser is missing (util-linux)"
  as_server=(runuser -u postgres --)
fi

# A Unix socket path is limited to 107 bytes: keep the directory short.
tmp_root=${TMPDIR:-/tmp}
if [[ ${#tmp_root} -gt 60 || ! -d "$tmp_root" || ! -w "$tmp_root" ]]; then tmp_root=/tmp; fi
pg_dir=$(mktemp -d "$tmp_root/mte-pg.XXXXXX") || fail "cannot create a temporary directory"
started=0

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  if [[ $started -eq 1 ]]; then
    "${as_server[@]}" "$bindir/pg_ctl" -D "$pg_dir/data" -m immediate -w -t 30 stop \
      >/dev/null 2>&1 || echo "with_postgres.sh: could not stop the server in $pg_dir" >&2
  fi
  rm -rf "$pg_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

chmod 0700 "$pg_dir"
if [[ ${#as_server[@]} -gt 0 ]]; then chown postgres: "$pg_dir"; fi

"${as_server[@]}" "$bindir/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 \
  --locale=C.UTF-8 --no-sync --no-instructions >"$pg_dir/initdb.log" 2>&1 ||
  { cat "$pg_dir/initdb.log" >&2; fail "initdb failed"; }

# The socket's name carries the port, so inside a private directory any port serves; with --tcp
# the port must also be free on 127.0.0.1: try random ones until the server binds one.
durability="-c fsync=off -c full_page_writes=off"
if [[ "${MTE_POSTGRES_DURABLE:-0}" == 1 ]]; then durability="-c max_connections=200"; fi
port=5432
attempts=1
if [[ $tcp -eq 1 ]]; then attempts=8; fi
listen="''"
for ((try = 1; try <= attempts; try++)); do
  if [[ $tcp -eq 1 ]]; then
    port=$((20000 + RANDOM % 40000))
    listen=127.0.0.1
  fi
  : >"$pg_dir/server.log"
  if [[ ${#as_server[@]} -gt 0 ]]; then chown postgres: "$pg_dir/server.log"; fi
  if "${as_server[@]}" "$bindir/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 30 \
    -o "-c listen_addresses=$listen -p $port -k $pg_dir $durability" \
    start >/dev/null 2>&1; then
    started=1
    break
  fi
  if ! grep -q 'could not bind\|Address already in use' "$pg_dir/server.log"; then break; fi
done
[[ $started -eq 1 ]] || fail "the server did not start"

export MTE_TEST_POSTGRES_DIR=$pg_dir
export MTE_TEST_POSTGRES_URI="postgresql:///postgres?host=$pg_dir&port=$port&user=postgres"
if [[ $tcp -eq 1 ]]; then
  export MTE_TEST_POSTGRES_TCP_URI="postgresql://postgres@127.0.0.1:$port/postgres"
fi
export PGHOST=$pg_dir PGPORT=$port PGUSER=postgres

status=0
"$@" || status=$?
exit "$status"
