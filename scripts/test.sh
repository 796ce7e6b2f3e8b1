#!/usr/bin/env bash
# Runs every test of the bridge on a fresh machine: installs and builds what
# the tests need (scripts/setup.sh), then the unit and store tests (SQLite and
# PostgreSQL), then the end-to-end tests against real Prosody and Dendrite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

# The store tests run on both engines; PostgreSQL runs here with trust auth.
export XMPPBRIDGE_TEST_POSTGRES="${XMPPBRIDGE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"

echo "== go vet"
go vet ./...
go vet -tags e2e ./...

echo "== unit and store tests (with the race detector: the outbox runs lanes side by side)"
go test -count=1 -race ./...

echo "== benchmarks, once each (they measure nothing here: a benchmark the code has outgrown fails now, not when someone needs it)"
BENCH_STORE_SIZES=1000 BENCH_DIR="$(mktemp -d)" go test -count=1 -run '^$' -bench . -benchtime 1x ./...

echo "== fuzzing, briefly (scripts/fuzz.sh; FUZZ_TIME=20m for a long run)"
FUZZ_TIME="${FUZZ_TIME:-5s}" bash scripts/fuzz.sh

echo "== crash drill, short (scripts/drill.sh; docs/reliability.md gives the long one)"
DRILL_SECONDS="${DRILL_SECONDS:-8}" DRILL_RATE="${DRILL_RATE:-200}" DRILL_KILLS="${DRILL_KILLS:-2}" DRILL_WINDOW="${DRILL_WINDOW:-1s}" bash scripts/drill.sh

echo "== end-to-end tests (Prosody, Dendrite, the bridge binary, real clients)"
go test -count=1 -tags e2e -timeout 30m -p 1 ./internal/rig/ ./e2e/
