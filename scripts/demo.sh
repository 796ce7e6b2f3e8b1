#!/usr/bin/env bash
# The bridge end to end on loopback: installs Prosody and builds Dendrite if
# needed (scripts/setup.sh), then starts Prosody, Dendrite and the bridge,
# sends a message each way with real clients, shows the receipts crossing,
# prints the id map and stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
go run ./cmd/demo
