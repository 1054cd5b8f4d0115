#!/bin/sh
# Smoke test of the Nexus image (deploy/docker/Dockerfile) and, with --cluster, of the
# docker-compose cluster (deploy/docker/cluster/). Needs a running Docker daemon, the image
# built (docker build -f deploy/docker/Dockerfile -t nexus .), curl, and a checkout built
# with `npm ci` (the host side of the signed request runs its `nexus run`). Slow and needs
# a daemon: not part of `npm test` or CI. Run from the repository root:
#
#   deploy/docker/smoke.sh [image]      the image: runs as uid 10001, state 0700, health,
#                                       a signed request from the host, no keys or dev tools
#   deploy/docker/smoke.sh cluster      the compose cluster: PostgreSQL, Redis, two nodes,
#                                       nginx; signed requests through nginx
#   deploy/docker/smoke.sh all          both
#
# Without Docker Hub, deploy/docker/standin/make-base.sh builds local stand-ins for the
# base images first (see docs/deploy.md, "docker-compose"); the cluster then runs with
# deploy/docker/standin/compose.standin.yml when NEXUS_SMOKE_STANDIN=1.
# Everything it creates (container, volume, compose project) is named nexus-smoke-<pid> and
# removed at the end. It prints no token.
set -eu
image=${NEXUS_IMAGE:-nexus}
name=nexus-smoke-$$
repo=$(cd "$(dirname "$0")/../.." && pwd)
nexus_cli="node $repo/packages/cli/bin/nexus.js"
fails=0
ok() { echo "ok   $*"; }
bad() {
  echo "FAIL $*"
  fails=$((fails + 1))
}
check() { # check DESCRIPTION EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: expected '$2', got '$3'"; fi
}
free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
wait_http() { # wait_http URL SECONDS
  i=0
  while [ "$i" -lt "$2" ]; do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    i=$((i + 1))
    sleep 1
  done
  return 1
}
# signed_get AUTHORITY ENROLLMENT_TOKEN: an agent on the host calls echo/hello through the
# proxy with `nexus run` (a lease, then RFC 9421-signed requests); prints the HTTP status.
signed_get() {
  agent_dir=$(mktemp -d)
  (cd "$agent_dir" && NEXUS_ENROLLMENT_TOKEN=$2 $nexus_cli run --authority "$1" -- \
    sh -c 'curl -s -o /dev/null -w "%{http_code}" "$NEXUS_PROXY/echo/hello"') 2>/dev/null || true
  rm -rf "$agent_dir"
}

cleanup() {
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker volume rm "$name" >/dev/null 2>&1 || true
  if [ -n "${compose_down:-}" ]; then
    $compose_down >/dev/null 2>&1 || true
    # `down -v` can leave volumes behind while a container's removal is still under way.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      vols=$(docker volume ls -q --filter "label=com.docker.compose.project=$name")
      [ -z "$vols" ] && break
      # shellcheck disable=SC2086
      docker volume rm $vols >/dev/null 2>&1 || sleep 3
    done
  fi
  rm -f "/tmp/$name.compose.yml" "/tmp/$name.nexus.yaml" "/tmp/$name.override.yml"
}
trap cleanup EXIT
trap "exit 130" INT TERM
mode=${1:-image}
nx="node /opt/nexus/packages/cli/bin/nexus.js"

if [ "$mode" != cluster ]; then
echo "== image $image"
check 'image user' 'nexus:nexus' "$(docker image inspect -f '{{.Config.User}}' "$image")"
# The image holds the checkout's sources, the built packages and production dependencies
# only: no state, keys, git history or dev tools (npm prune leaves @types/ empty).
leftovers=$(docker run --rm --entrypoint sh "$image" -c '
  cd /opt/nexus
  find . \( -name .nexus -o -name "*.key" -o -name "*.token" -o -name "*.db" -o -name .git \) -print
  grep -rlE "^-----BEGIN [A-Z ]*PRIVATE KEY-----\$" --exclude-dir=node_modules . || true
  for d in typescript vitest eslint prettier @types fast-check; do
    test -n "$(ls -A node_modules/$d 2>/dev/null)" && echo node_modules/$d
  done
  true')
check 'no state, keys, .git or dev dependencies in /opt/nexus' '' "$leftovers"
check 'production dependency present (better-sqlite3 built)' 'ok' "$(docker run --rm --entrypoint node "$image" -e \
  'require("/opt/nexus/node_modules/better-sqlite3")(":memory:");console.log("ok")' 2>&1)"

echo "== one node (SQLite) in volume $name"
proxy_port=$(free_port)
admin_port=$(free_port)
docker volume create "$name" >/dev/null
docker run --rm -v "$name:/var/lib/nexus" "$image" init --dir /var/lib/nexus >/dev/null
# As the Dockerfile's header says: listen on all interfaces inside the container, and the
# public URL the agents use (here the host's published port).
docker run --rm -v "$name:/var/lib/nexus" --entrypoint sed "$image" -i \
  -e 's|listen: "127.0.0.1:7070"|listen: "0.0.0.0:7070"|' \
  -e 's|listen: "127.0.0.1:7071"|listen: "0.0.0.0:7071"|' \
  -e "s|# public_url: http://127.0.0.1:7070 .*|public_url: http://127.0.0.1:$proxy_port|" \
  /var/lib/nexus/nexus.yaml
docker run -d --name "$name" -p "127.0.0.1:$proxy_port:7070" -p "127.0.0.1:$admin_port:7071" \
  -v "$name:/var/lib/nexus" "$image" >/dev/null
if wait_http "http://127.0.0.1:$admin_port/v1/health" 60; then
  ok "GET /v1/health from the host: $(curl -s "http://127.0.0.1:$admin_port/v1/health")"
else
  bad 'GET /v1/health from the host'
  docker logs "$name" 2>&1 | tail -20
fi
check 'process uid:gid' '10001:10001' "$(docker exec "$name" sh -c 'stat -c %u:%g /proc/1')"
check 'state dir mode and owner' '700 nexus' "$(docker exec "$name" stat -c '%a %U' /var/lib/nexus)"
check '.nexus mode' '700' "$(docker exec "$name" stat -c '%a' /var/lib/nexus/.nexus)"
check 'master key mode' '600' "$(docker exec "$name" stat -c '%a' /var/lib/nexus/.nexus/master.key)"

# A signed request: the init's example service "echo" (bearer credential echo-token,
# upstream 127.0.0.1:8080 inside the container) served by `nexus echo-server`; operator
# commands run in the container as the node's user, the agent runs on the host.
docker exec -d "$name" node /opt/nexus/packages/cli/bin/nexus.js echo-server --port 8080
printf 'smoke-secret-%s' "$$" | docker exec -i "$name" $nx credential set echo-token >/dev/null
token=$(docker exec "$name" $nx agent enroll demo-agent 2>/dev/null | head -n1)
check 'signed GET /echo/hello through the proxy (agent on the host)' '200' \
  "$(signed_get "http://127.0.0.1:$proxy_port" "$token")"
check 'a request without a lease is refused' '401' \
  "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$proxy_port/echo/hello")"
check 'audit chain verifies' 'OK' "$(docker exec "$name" $nx audit verify 2>&1 | cut -c1-2)"
fi

if [ "$mode" != image ]; then
  echo "== compose cluster (project $name)"
  cdir=$repo/deploy/docker/cluster
  files="-f $cdir/docker-compose.yml"
  if [ "${NEXUS_SMOKE_STANDIN:-}" = 1 ]; then files="$files -f $repo/deploy/docker/standin/compose.standin.yml"; fi
  if docker compose version >/dev/null 2>&1; then
    compose="docker compose -p $name $files"
  else
    # Compose v1 (Debian's docker-compose 1.29) does not know the top-level `name:` key;
    # the project name is given with -p instead.
    sed '/^name:/d' "$cdir/docker-compose.yml" >"/tmp/$name.compose.yml"
    compose="docker-compose -p $name --project-directory $cdir -f /tmp/$name.compose.yml ${files#-f "$cdir"/docker-compose.yml}"
  fi
  # The smoke's nexus.yaml: the cluster's, plus a service, an agent and a policy.
  sed -e '/^services: {}/d' -e '/^agents: {}/d' -e '/^policies: \[\]/d' "$cdir/nexus.yaml" >"/tmp/$name.nexus.yaml"
  cat >>"/tmp/$name.nexus.yaml" <<'YAML'
services:
  echo:
    upstream: http://127.0.0.1:8080
    auth: { type: bearer, credential: echo-token }
agents:
  demo-agent: { roles: [reader] }
policies:
  - id: reader-reads-echo
    allow: { roles: [reader], services: [echo], methods: [GET, HEAD], paths: ['/**'] }
YAML
  chmod 644 "/tmp/$name.nexus.yaml"
  cat >"/tmp/$name.override.yml" <<YAML
services:
  nexus-1:
    volumes: ['/tmp/$name.nexus.yaml:/etc/nexus/nexus.yaml:ro']
  nexus-2:
    volumes: ['/tmp/$name.nexus.yaml:/etc/nexus/nexus.yaml:ro']
YAML
  compose="$compose -f /tmp/$name.override.yml"
  $compose config -q && ok 'compose config'
  compose_down="$compose down -v"
  lb_port=8080
  $compose up -d
  if wait_http "http://127.0.0.1:7071/v1/health" 120; then ok 'node 1 admin health'; else bad 'node 1 admin health'; fi
  wait_http "http://127.0.0.1:$lb_port/" 60 || true
  check 'nexus-init exit code' '0' "$(docker inspect -f '{{.State.ExitCode}}' "$($compose ps -q nexus-init)")"
  for n in nexus-1 nexus-2; do
    c=$($compose ps -q $n)
    check "$n runs as" '10001:10001' "$(docker exec "$c" stat -c %u:%g /proc/1)"
    check "$n is running" 'running' "$(docker inspect -f '{{.State.Status}}' "$c")"
  done
  # A signed request through nginx: the agent on the host signs for the cluster's
  # public_url (http://localhost:8080), nginx sends it to either node. Needs a service:
  # the smoke's copy of the cluster's nexus.yaml adds "echo" (an echo server on loopback
  # 8080 inside each node's container), the agent and a policy; reloaded on every node.
  for n in nexus-1 nexus-2; do
    docker exec -d "$($compose ps -q $n)" node /opt/nexus/packages/cli/bin/nexus.js echo-server --port 8080
  done
  c1=$($compose ps -q nexus-1)
  op="NEXUS_OPERATOR_TOKEN=\$(cat /var/lib/nexus/.nexus/operator.token) NEXUS_ADDR=http://127.0.0.1:7071"
  printf 'smoke-secret-%s' "$$" | docker exec -i "$c1" sh -c "$op $nx credential set echo-token" >/dev/null
  token=$(docker exec "$c1" sh -c "$op $nx agent enroll demo-agent" 2>/dev/null | head -n1)
  for i in 1 2 3 4; do
    check "signed GET /echo/hello through nginx ($i)" '200' "$(signed_get "http://localhost:$lb_port" "$token")"
    token=$(docker exec "$c1" sh -c "$op $nx agent enroll demo-agent" 2>/dev/null | head -n1)
  done
  served=$(for n in nexus-1 nexus-2; do $compose logs --no-color $n 2>/dev/null | grep -c '"service":"echo"' || true; done | tr '\n' ' ')
  echo "     access-log lines of service echo per node (nexus-1 nexus-2): $served"
fi

cleanup
compose_down=
if [ "$fails" -gt 0 ]; then
  echo "smoke: $fails check(s) failed"
  exit 1
fi
echo 'smoke: all checks passed'
