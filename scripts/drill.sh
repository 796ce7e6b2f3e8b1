#!/usr/bin/env bash
# The crash drill (bench/procbench/drill.go): receipts both ways at a steady
# rate between stand-ins while the bridge binary is killed with SIGKILL at
# random instants and restarted, on SQLite and then on PostgreSQL; then,
# the bridge on PostgreSQL, while the PostgreSQL server crashes (pg_ctlcluster
# restart -m immediate) and comes back, and while a proxy cuts every
# connection between them (DRILL_KILLS x DRILL_PG_CUTS times: a cut is
# cheap, and many find what one crash does not); then, the bridge on SQLite on a
# small tmpfs, while a file fills that disk for 3 s at a time (needs root,
# to mount it); then while the XMPP server cuts the component's connection,
# as Prosody does when it restarts. Each receipt is counted as arrived
# once, duplicated or lost. It fails if a
# Matrix → XMPP receipt is lost, or an XMPP → Matrix one that is not in the
# unrecorded tail of what a dead connection carried (XEP-0114 has no
# acknowledgement: what the bridge had read and not recorded, or not read,
# when it died is lost by the protocol; docs/reliability.md says how the tail is told).
#
#   DRILL_SECONDS=60 DRILL_RATE=500 DRILL_KILLS=5 DRILL_PORTALS=20 DRILL_WINDOW=200ms
#   DRILL_ENGINES="sqlite postgres" DRILL_PG_CRASH=1 DRILL_PG_CUTS=20 DRILL_DISK=1 DRILL_XMPP_CUT=1  BENCH_DIR=/dev/shm
set -euo pipefail
cd "$(dirname "$0")/.."

bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/bridge" ./cmd/bridge
go build -o "$bin/procbench" ./bench/procbench
export XMPPBRIDGE_TEST_POSTGRES="${XMPPBRIDGE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
for engine in ${DRILL_ENGINES:-sqlite postgres}; do
	echo "== crash drill: the bridge SIGKILLed, on $engine"
	DRILL_DB="$engine" BENCH_BRIDGE="$bin/bridge" "$bin/procbench" -drill
done
if [ "${DRILL_PG_CRASH:-1}" = 1 ]; then
	echo "== crash drill: PostgreSQL crashed under the bridge"
	DRILL_CRASH=postgres BENCH_BRIDGE="$bin/bridge" "$bin/procbench" -drill
fi
if [ "${DRILL_PG_CUTS:-20}" -gt 0 ]; then
	echo "== crash drill: the connections to PostgreSQL cut"
	DRILL_CRASH=pgcut DRILL_KILLS=$((${DRILL_KILLS:-5} * ${DRILL_PG_CUTS:-20})) BENCH_BRIDGE="$bin/bridge" "$bin/procbench" -drill
fi
if [ "${DRILL_DISK:-1}" = 1 ]; then
	echo "== crash drill: the database's disk full"
	DRILL_CRASH=disk BENCH_BRIDGE="$bin/bridge" "$bin/procbench" -drill
fi
if [ "${DRILL_XMPP_CUT:-1}" = 1 ]; then
	echo "== crash drill: the XMPP connection cut"
	DRILL_CRASH=xmpp BENCH_BRIDGE="$bin/bridge" "$bin/procbench" -drill
fi
