#!/usr/bin/env bash
# Build the PostgreSQL 15 test image (xtask-postgres-test:15) without any
# container registry:
#   1. mmdebstrap a minimal Debian bookworm rootfs with postgresql-15 and
#      postgresql-contrib from the machine's own apt sources;
#   2. `docker import` it as xtask-postgres-base:15;
#   3. `docker build` ./Dockerfile (FROM xtask-postgres-base:15) on top.
#
# Usage: ci/test-image/build.sh [--force]
#   Builds only when the image is absent; --force rebuilds it.
# Needs: root (mmdebstrap's root mode), mmdebstrap, a running docker daemon.
set -euo pipefail

IMAGE=xtask-postgres-test:15
BASE_IMAGE=xtask-postgres-base:15
SUITE=bookworm
PACKAGES=postgresql-15,postgresql-contrib,util-linux,bash

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
			sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
			exit 0
			;;
		*) die "unknown argument: $arg (usage: $0 [--force])" ;;
	esac
done

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

log "building $SUITE rootfs with $PACKAGES (mmdebstrap, log: $tmp/mmdebstrap.log)"
# - man pages/docs/translations are not installed (copyright files are kept);
#   /usr/share/postgresql/15/man must be installed because postgresql-client's
#   postinst registers them with update-alternatives, so it is deleted afterwards.
# - postgresql-common's postinst creates a "main" cluster: drop it, the image's
#   entrypoint initialises $PGDATA itself.
# - mmdebstrap itself removes apt's package lists and caches at the end.
# The hooks are run by mmdebstrap with "$1" = the chroot directory.
# shellcheck disable=SC2016
if ! mmdebstrap \
	--variant=minbase \
	--include="$PACKAGES" \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--customize-hook='chroot "$1" pg_dropcluster 15 main' \
	--customize-hook='rm -rf "$1"/usr/share/postgresql/15/man "$1"/var/log/postgresql/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old' \
	"$SUITE" "$tmp/rootfs.tar" "${mirror_args[@]}" >"$tmp/mmdebstrap.log" 2>&1; then
	tail -n 60 "$tmp/mmdebstrap.log" >&2
	die "mmdebstrap failed (last lines above)"
fi
log "rootfs done in $((SECONDS - start)) s ($(du -h "$tmp/rootfs.tar" | cut -f1))"

log "importing rootfs as $BASE_IMAGE"
# An imported image has no config at all: give it the usual PATH so that the
# Dockerfile's ENV PATH=...:$PATH and RUN steps work.
docker import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'CMD ["bash"]' \
	--message "mmdebstrap $SUITE rootfs with $PACKAGES" \
	"$tmp/rootfs.tar" "$BASE_IMAGE" >/dev/null
rm -f "$tmp/rootfs.tar"

log "building $IMAGE from $here/Dockerfile"
docker build --tag "$IMAGE" "$here"

# With --force the previous images are now untagged; remove them if unused.
for id in "$old_image_id" "$old_base_id"; do
	if [ -n "$id" ] && [ -z "$(docker image inspect --format '{{join .RepoTags ","}}' "$id" 2>/dev/null)" ]; then
		docker image rm "$id" >/dev/null 2>&1 || true
	fi
done

size="$(docker image inspect --format '{{.Size}}' "$IMAGE")"
log "built $IMAGE ($((size / 1000000)) MB) in $((SECONDS - start)) s"
