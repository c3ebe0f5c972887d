#!/usr/bin/env bash
# Build the Redis test image for the xtask docker engine without any container registry:
# a minimal Debian bookworm rootfs with Debian's redis-server (mmdebstrap, from the machine's own
# apt sources), imported with `docker import` as xtask-redis-test:7. The tests give it to xtask
# as XTASK_REDIS_IMAGE; xtask runs it as `redis-server /data/redis.conf`, the volume on /data.
#
# Usage: ci/test-image/build-redis.sh [--force] [IMAGE]
#   Builds only when the image is absent; --force rebuilds it.
# Needs: root (mmdebstrap's root mode), mmdebstrap, a running docker daemon.
set -euo pipefail

IMAGE=xtask-redis-test:7
SUITE=bookworm

log() { printf '[redis-image] %s\n' "$*"; }
die() {
	printf '[redis-image] error: %s\n' "$*" >&2
	exit 1
}

force=0
for arg in "$@"; do
	case "$arg" in
		--force) force=1 ;;
		-h | --help)
			sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
			exit 0
			;;
		-*) die "unknown option: $arg (usage: $0 [--force] [IMAGE])" ;;
		*) IMAGE=$arg ;;
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
tmp="$(mktemp -d "${TMPDIR:-/tmp}/xtask-redis-image.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

mirror_args=()
for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
	if [ -s "$f" ] && grep -Eq "^[^#]*\\b${SUITE}\\b" "$f"; then
		mirror_args=("$f")
		break
	fi
done

log "building $SUITE rootfs with redis-server (mmdebstrap, log: $tmp/mmdebstrap.log)"
# shellcheck disable=SC2016
if ! mmdebstrap \
	--variant=minbase \
	--include=redis-server \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--customize-hook='mkdir -p "$1"/data' \
	--customize-hook='rm -rf "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old "$1"/var/log/redis/*' \
	"$SUITE" "$tmp/rootfs.tar" "${mirror_args[@]}" >"$tmp/mmdebstrap.log" 2>&1; then
	tail -n 60 "$tmp/mmdebstrap.log" >&2
	die "mmdebstrap failed (last lines above)"
fi

log "importing it as $IMAGE"
docker import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'WORKDIR /data' \
	--change 'VOLUME /data' \
	--change 'EXPOSE 6379' \
	--change 'CMD ["redis-server", "--bind", "*", "--protected-mode", "no"]' \
	--message "mmdebstrap $SUITE rootfs with redis-server" \
	"$tmp/rootfs.tar" "$IMAGE" >/dev/null
log "built $IMAGE ($(docker run --rm "$IMAGE" redis-server --version | cut -d' ' -f3)) in $((SECONDS - start)) s"
