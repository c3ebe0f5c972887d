#!/usr/bin/env bash
# Entrypoint of the xtask PostgreSQL test image (see Dockerfile / build.sh).
#
# Honours the environment contract of the official `postgres` image:
#   POSTGRES_USER              superuser name (default: postgres)
#   POSTGRES_PASSWORD          superuser password; required unless
#                              POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_DB                database created at init (default: $POSTGRES_USER)
#   POSTGRES_HOST_AUTH_METHOD  auth method for TCP connections (default: scram-sha-256)
#   PGDATA                     data directory (default: /var/lib/postgresql/data)
#   /docker-entrypoint-initdb.d/*.sql, *.sql.gz, *.sh   run once, on first init
#
# Started as root, it prepares PGDATA and re-executes itself as the `postgres`
# system user (setpriv, no extra process). An empty PGDATA is initialised
# (initdb + a temporary socket-only server for POSTGRES_DB and the init
# scripts); a non-empty one is used as is. Finally the server is exec'ed so
# that it is PID 1 and receives `docker stop`'s SIGINT directly.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*"; }
die() { printf '%s [entrypoint] error: %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; exit 1; }

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
SOCKET_DIR=/var/run/postgresql

# `docker run IMAGE -c foo=bar` means `postgres -c foo=bar`.
# No arguments at all also means the server.
if [ "$#" -eq 0 ]; then
	set -- postgres
fi
case "$1" in
	-*) set -- postgres "$@" ;;
esac

# Anything other than the server (e.g. `bash`, `psql ...`) runs unchanged.
if [ "${1:-}" != 'postgres' ]; then
	exec "$@"
fi

if [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA" "$SOCKET_DIR"
	# chown only what is not already ours: cheap on restarts with existing data
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
	chmod 0700 "$PGDATA"
	chown postgres:postgres "$SOCKET_DIR"
	chmod 2775 "$SOCKET_DIR"
	exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

# ---- from here on we are the postgres user (or an arbitrary --user) ----

pg_psql() {
	psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" "$@"
}

init_cluster() {
	local auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != 'trust' ]; then
		cat >&2 <<-'EOM'
			error: database is uninitialized and superuser password is not specified.
			       You must set POSTGRES_PASSWORD to a non-empty value for the superuser
			       (e.g. "-e POSTGRES_PASSWORD=password" on "docker run"), or set
			       POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without a
			       password (NOT recommended).
		EOM
		exit 1
	fi

	log "initializing database cluster in $PGDATA (superuser: $POSTGRES_USER, host auth: $auth)"
	local pwfile=''
	local -a initdb_args=(
		--pgdata="$PGDATA"
		--username="$POSTGRES_USER"
		--encoding=UTF8
		--locale=C.UTF-8
		--auth-local=trust
		--auth-host="$auth"
	)
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		# The password goes through a private file, never through a command line.
		pwfile="$(umask 077 && mktemp "${TMPDIR:-/tmp}/pwfile.XXXXXX")"
		# shellcheck disable=SC2064
		trap "rm -f '$pwfile'" EXIT
		printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile" # printf is a builtin: no argv leak
		initdb_args+=(--pwfile="$pwfile")
	fi
	initdb "${initdb_args[@]}"
	if [ -n "$pwfile" ]; then
		rm -f "$pwfile"
		trap - EXIT
	fi

	printf '\n# added by the xtask test image entrypoint\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

	# Temporary server, reachable through the Unix socket only, so that no client
	# can connect over TCP before initialisation has finished.
	log "starting temporary server (socket only) for initialisation"
	pg_ctl --pgdata="$PGDATA" --wait --timeout=60 --silent \
		-o "-c listen_addresses='' -p 5432 -k $SOCKET_DIR" start

	if [ "$POSTGRES_DB" != 'postgres' ]; then
		log "creating database $POSTGRES_DB"
		pg_psql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db";
		EOSQL
	fi

	local f
	shopt -s nullglob
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then
					log "running $f"
					"$f"
				else
					log "sourcing $f"
					# shellcheck disable=SC1090
					. "$f"
				fi
				;;
			*.sql)
				log "running $f"
				pg_psql --dbname "$POSTGRES_DB" -f "$f"
				;;
			*.sql.gz)
				log "running $f"
				gzip -dc "$f" | pg_psql --dbname "$POSTGRES_DB"
				;;
			*)
				log "ignoring $f"
				;;
		esac
	done
	shopt -u nullglob

	pg_ctl --pgdata="$PGDATA" --wait --timeout=60 --silent -m fast stop
	log "PostgreSQL init process complete; ready for start up."
}

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export POSTGRES_USER POSTGRES_DB

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	init_cluster
else
	log "PostgreSQL database directory appears to contain a database; skipping initialization"
fi

shift # drop "postgres"
# Later -c options given by the caller override this one.
exec postgres -c listen_addresses='*' -c unix_socket_directories="$SOCKET_DIR" "$@"
