#!/bin/sh
# Runs redis-server as the redis user with protected mode off, as the official image does.
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  chown redis:redis /data
  exec runuser -u redis -- redis-server --protected-mode no --dir /data "$@"
fi
exec "$@"
