#!/usr/bin/env bash
# The load bench: the bridge binary as its own process between do-nothing
# stand-ins for both servers (bench/procbench, another process), next to a
# do-nothing relay process over the same path in the same run; every figure
# is also given as a ratio to the relay's. Then, with BENCH_STORE=1, the
# store bench: receipt lookups at 1 M and 10 M mappings on SQLite and
# PostgreSQL (database/store_bench_test.go).
#
#   BENCH_SHAPES=hot,p100,p1000,flood,paced1,paced100,dead,group,media  (or e.g. hot/x2m-0333, group/m2x-read; empty: all)
#   BENCH_MEDIA_FILES=200 BENCH_MEDIA_KIB=1024  (the media shape: XEP-0066 pictures sent at once)
#   BENCH_N=20000 BENCH_HISTORY=20000 BENCH_PACED_SECONDS=3 BENCH_DEAD=30 BENCH_DEAD_SECONDS=30
#   BENCH_BRIDGE=path/to/bridge  (a bridge built elsewhere, e.g. of an older commit; default: ./cmd/bridge)
#   BENCH_TIMEOUT=60s BENCH_STALL=20s BENCH_DIR=/dev/shm
#   BENCH_STORE=1 BENCH_STORE_SIZES=1000000,10000000
set -euo pipefail
cd "$(dirname "$0")/.."

bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
if [ -n "${BENCH_BRIDGE:-}" ]; then
	echo "== build: go build ./bench/procbench (the bridge: $BENCH_BRIDGE)"
else
	echo "== build: go build ./cmd/bridge, ./bench/procbench"
	go build -o "$bin/bridge" ./cmd/bridge
	BENCH_BRIDGE="$bin/bridge"
fi
go build -o "$bin/procbench" ./bench/procbench

echo "== load bench (bridge and relay as processes, stand-ins in the driver)"
start=$(date +%s)
BENCH_BRIDGE="$BENCH_BRIDGE" "$bin/procbench" "$@"
echo "load bench: $(( $(date +%s) - start )) s"

if [ "${BENCH_STORE:-}" = 1 ]; then
	echo "== store bench (receipt lookups at 1 M and 10 M mappings, SQLite and PostgreSQL)"
	export XMPPBRIDGE_TEST_POSTGRES="${XMPPBRIDGE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
	start=$(date +%s)
	go test -run XXX -bench Store -benchtime 200x -timeout 60m ./database/
	echo "store bench: $(( $(date +%s) - start )) s"
fi
