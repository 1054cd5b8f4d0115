#!/bin/sh
# Makes local stand-ins for the Docker Hub images the Nexus image and the compose cluster
# start from, for machines that reach Debian's mirror and the npm registry but not Docker
# Hub. They are NOT the official images: same Debian release (bookworm), but this host's
# Node 20 binary instead of the official build, Debian's PostgreSQL 15 / Redis 7.0 /
# nginx 1.22 instead of postgres:16 / redis:7 / nginx:1.27.
#
#   debian:bookworm-slim    debootstrap --variant=minbase bookworm
#   node:20-bookworm-slim   the same, plus this host's node, npm and Node headers at the
#                           official image's paths (/usr/local/bin, /usr/local/lib/node_modules,
#                           /usr/local/include/node)
#   nexus-standin/postgres, nexus-standin/redis, nexus-standin/nginx (the Dockerfiles beside
#                           this script; compose.standin.yml points the cluster at them)
#
# Run as root with a running Docker daemon, from anywhere:
#   deploy/docker/standin/make-base.sh [WORKDIR]      (default /tmp/nexus-standin-rootfs)
# Extra CA certificates of this host (/usr/local/share/ca-certificates/*.crt, e.g. a
# TLS-intercepting egress proxy's) go into the Node stand-in as NODE_EXTRA_CA_CERTS, and
# npm_config_nodedir points node-gyp at the bundled headers (nodejs.org may be unreachable
# too): the official image needs neither.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=${1:-/tmp/nexus-standin-rootfs}
node=$(command -v node)
npmdir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
nodeinc=$(dirname "$(dirname "$node")")/include/node
case "$("$node" --version)" in v20.*) ;; *) echo "make-base: need Node 20 on the PATH" >&2; exit 1 ;; esac
test -f "$nodeinc/node_version.h" || { echo "make-base: no Node headers at $nodeinc" >&2; exit 1; }

if [ ! -x "$root/bin/sh" ]; then
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
fi
path='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
tar -C "$root" -c . | docker import -c "$path" -c 'CMD ["bash"]' \
  -m 'stand-in for debian:bookworm-slim (debootstrap minbase)' - debian:bookworm-slim

rm -rf "$root.node" && cp -a "$root" "$root.node"
cp -a "$node" "$root.node/usr/local/bin/node"
mkdir -p "$root.node/usr/local/lib/node_modules" "$root.node/usr/local/include" "$root.node/etc/ssl/standin"
cp -a "$npmdir" "$root.node/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root.node/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root.node/usr/local/bin/npx"
cp -a "$nodeinc" "$root.node/usr/local/include/node"
extra=
if cat /usr/local/share/ca-certificates/*.crt >"$root.node/etc/ssl/standin/extra-ca.pem" 2>/dev/null; then
  extra='ENV NODE_EXTRA_CA_CERTS=/etc/ssl/standin/extra-ca.pem'
fi
tar -C "$root.node" -c . | docker import -c "$path" ${extra:+-c "$extra"} -c 'ENV npm_config_nodedir=/usr/local' \
  -c 'CMD ["node"]' -m "stand-in for node:20-bookworm-slim (debootstrap minbase + host node $("$node" --version))" \
  - node:20-bookworm-slim
rm -rf "$root.node"

for s in postgres redis nginx; do
  docker build -q -f "$here/$s.Dockerfile" -t "nexus-standin/$s" "$here"
done
