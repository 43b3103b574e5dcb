#!/usr/bin/env bash
# Throughput of 1 vs 3 replicas behind HAProxy (deploy/haproxy/haproxy.cfg) and the cost of
# the Redis round trip (a limit in Redis vs in local buckets), with wrk (Debian) on this
# machine, against the release binary (`cargo build --release` first). Not a test.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release/portcullis}
DIR=$(mktemp -d)
mkdir -p $DIR/files && echo "hello" > $DIR/files/hello.txt
HASH=$(printf '%s' bench-cluster-key-0123456789 | sha256sum | cut -d' ' -f1)
RPORT=${RPORT:-6391}
redis-server --port $RPORT --save '' --appendonly no --daemonize yes >/dev/null
cleanup() { pkill -f "portcullis serve --config $DIR" || true; pkill -f "haproxy -f $DIR" || true; redis-cli -p $RPORT shutdown nosave >/dev/null 2>&1 || true; }
trap cleanup EXIT
config() { # $1 name $2 port $3 cluster(0/1)
  cat > $DIR/$1.toml <<T
[server]
name = "m"
[http]
listen = "127.0.0.1:$2"
[logging]
format = "json"
level = "warn"
[metrics]
enabled = false
[auth]
[[auth.api_keys]]
name = "bench"
sha256 = "$HASH"
scopes = []
[tools.read_file]
rate_limit = { per_minute = 6000000, burst = 1000000 }
[[files]]
name = "files"
path = "files"
T
  if [ "$3" = 1 ]; then printf '[cluster]\nredis_url = "redis://127.0.0.1:%s"\nreplica = "%s"\n' $RPORT $1 >> $DIR/$1.toml; fi
}
start() { $BIN serve --config $DIR/$1.toml 2>/dev/null & sleep 2; }
haproxy_for() { # ports...
  sed -e "s/bind :8080/bind 127.0.0.1:18080/" -e '/server portcullis-/d' $ROOT/deploy/haproxy/haproxy.cfg > $DIR/haproxy.cfg
  i=1; for p in "$@"; do echo "    server r$i 127.0.0.1:$p check" >> $DIR/haproxy.cfg; i=$((i+1)); done
  haproxy -f $DIR/haproxy.cfg -db >/dev/null 2>&1 & sleep 1.5
}
bench() { t=2; [ "$3" = 1 ] && t=1; echo -n "$1 c=$3: "; wrk -t$t -c$3 -d${DUR:-5}s -s $ROOT/deploy/haproxy/measure.lua $2 2>/dev/null | grep '^rps'; }
config local 18101 0; config c1 18111 1; config c2 18112 1; config c3 18113 1
start local; start c1; start c2; start c3
for c in 1 8 32; do
  bench "direct, local buckets" http://127.0.0.1:18101/mcp $c
  bench "direct, limit in redis" http://127.0.0.1:18111/mcp $c
done
haproxy_for 18111; for c in 1 8 32; do bench "haproxy -> 1 replica (redis)" http://127.0.0.1:18080/mcp $c; done
pkill -f "haproxy -f $DIR"; sleep 0.5
haproxy_for 18111 18112 18113; for c in 1 8 32; do bench "haproxy -> 3 replicas (redis)" http://127.0.0.1:18080/mcp $c; done
