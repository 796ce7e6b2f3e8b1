#!/usr/bin/env bash
# Installs what the end-to-end tests and the demo run against (internal/rig):
#   - Prosody, from Debian;
#   - ejabberd, from Debian (23.01 on bookworm), for the group tests on its
#     multi-user chat; the rig runs its own, never the system service;
#   - slixmpp (python3-slixmpp), from Debian, a real client for the e2e tests;
#   - profanity, mcabber and tmux, from Debian, terminal clients the e2e
#     tests drive;
#   - Dendrite v0.15.2, built once from tools/dendrite into
#     ${XMPPBRIDGE_CACHE:-$HOME/.cache/xmppbridge}/dendrite-v0.15.2/;
#   - PostgreSQL (installed and started if need be), trusting the user
#     postgres on 127.0.0.1, with a database "test" for the store tests.
# Idempotent: what is already there is left alone. Meant for Debian, as root.
set -euo pipefail

DENDRITE_VERSION=v0.15.2
DENDRITE_MODULE=github.com/element-hq/dendrite
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${XMPPBRIDGE_CACHE:-$HOME/.cache/xmppbridge}
DENDRITE_DIR=$CACHE/dendrite-$DENDRITE_VERSION

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root for: $*"
	fi
}

# --- Prosody ----------------------------------------------------------------
if command -v prosody >/dev/null 2>&1 && command -v prosodyctl >/dev/null 2>&1; then
	say "prosody: already installed ($(dpkg-query -W -f='${Version}' prosody 2>/dev/null || echo 'version unknown'))"
else
	say "prosody: installing from apt"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y prosody
	# The package starts a system-wide Prosody on the default ports. The rig
	# never uses those ports, but a server nobody asked for should not keep
	# running: stop the one the install just started.
	say "prosody: stopping the system service the package started (the rig runs its own)"
	as_root service prosody stop >/dev/null 2>&1 || as_root prosodyctl stop >/dev/null 2>&1 || true
fi

# --- prosody-modules ----------------------------------------------------------
# The community modules, for mod_privilege (XEP-0356): the rig lets the
# component write its users' rosters, as a server set up for it does.
if [ -f /usr/lib/prosody/modules/mod_privilege/mod_privilege.lua ]; then
	say "prosody-modules: already installed ($(dpkg-query -W -f='${Version}' prosody-modules 2>/dev/null || echo '?'))"
else
	say "prosody-modules: installing from apt (mod_privilege)"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y prosody-modules
fi

# --- ejabberd -----------------------------------------------------------------
# The group portals' tests run on ejabberd's mod_muc as well as on
# Prosody's (internal/rig/ejabberd.go starts a private node in the
# foreground, from the Erlang applications the package installs).
if ls /usr/lib/*/ejabberd-*/ebin/ejabberd.app >/dev/null 2>&1 && command -v erl >/dev/null 2>&1; then
	say "ejabberd: already installed ($(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null || echo 'version unknown'))"
else
	say "ejabberd: installing from apt"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y ejabberd
	# The package starts a system-wide ejabberd on the default ports (5222,
	# 5269, 5280, 5443, ...). The rig's servers take free ports of their
	# own, never those, but a server nobody asked for should not keep
	# running or come back at the next boot: stop and disable it.
	say "ejabberd: stopping and disabling the system service the package started (the rig runs its own)"
	as_root systemctl disable --now ejabberd >/dev/null 2>&1 || true
	as_root service ejabberd stop >/dev/null 2>&1 || true
fi

# --- slixmpp ----------------------------------------------------------------
# A real third-party XMPP client for the end-to-end tests (internal/peers),
# in Debian's own python3 (the pyenv one first on PATH does not see it).
if /usr/bin/python3 -c 'from slixmpp import ClientXMPP' >/dev/null 2>&1; then
	say "slixmpp: already installed ($(dpkg-query -W -f='${Version}' python3-slixmpp 2>/dev/null || echo 'version unknown'))"
else
	say "slixmpp: installing python3-slixmpp from apt"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-slixmpp
fi

# --- profanity, mcabber, tmux -------------------------------------------------
# Real terminal clients for the end-to-end tests, driven by keystrokes in
# tmux (internal/peers/profanity.go, mcabber.go): puppets must look right to
# the clients people use, not only to a library.
if command -v profanity >/dev/null 2>&1 && command -v mcabber >/dev/null 2>&1 && command -v tmux >/dev/null 2>&1; then
	say "profanity, mcabber, tmux: already installed ($(dpkg-query -W -f='${Version}' profanity 2>/dev/null || echo '?'), $(dpkg-query -W -f='${Version}' mcabber 2>/dev/null || echo '?'))"
else
	say "profanity, mcabber, tmux: installing from apt"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y profanity mcabber tmux
fi

# --- Dendrite ---------------------------------------------------------------
dendrite_built() {
	local b
	for b in dendrite generate-config generate-keys; do
		[ -x "$DENDRITE_DIR/$b" ] || return 1
	done
}

if dendrite_built; then
	say "dendrite: already built in $DENDRITE_DIR"
else
	command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go (see go.mod) and run again"
	mkdir -p "$CACHE"
	# One build at a time, even if setup.sh runs twice at once.
	exec 9>"$CACHE/.setup.lock"
	say "dendrite: waiting for the build lock $CACHE/.setup.lock"
	flock 9
	if dendrite_built; then
		say "dendrite: built by another setup.sh meanwhile"
	else
		if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
			# Dendrite falls back to a pure-Go SQLite (modernc) without cgo.
			say "dendrite: no C compiler, building with CGO_ENABLED=0"
			export CGO_ENABLED=0
		fi
		# Build next to the cache dir, then rename: a killed build leaves
		# only a temporary directory, never a half-filled cache. Holding the
		# lock, any such leftover is from a build that is gone.
		rm -rf "$CACHE"/.dendrite-build.*
		tmp=$(mktemp -d "$CACHE/.dendrite-build.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		trap 'exit 130' INT TERM
		say "dendrite: building $DENDRITE_MODULE $DENDRITE_VERSION into $DENDRITE_DIR (a few minutes)"
		start=$(date +%s)
		(
			cd "$ROOT/tools/dendrite"
			go build -o "$tmp/" \
				"$DENDRITE_MODULE/cmd/dendrite" \
				"$DENDRITE_MODULE/cmd/generate-config" \
				"$DENDRITE_MODULE/cmd/generate-keys"
		)
		for b in dendrite generate-config generate-keys; do
			[ -x "$tmp/$b" ] || die "dendrite: build produced no $b"
		done
		rm -rf "$DENDRITE_DIR"
		mv "$tmp" "$DENDRITE_DIR"
		chmod 755 "$DENDRITE_DIR"
		trap - EXIT INT TERM
		say "dendrite: built in $(( $(date +%s) - start ))s: $("$DENDRITE_DIR/dendrite" -version 2>/dev/null || echo "$DENDRITE_DIR/dendrite")"
	fi
	exec 9>&-
fi

# --- PostgreSQL -------------------------------------------------------------
# The store tests need PostgreSQL on 127.0.0.1 with trust auth for the user
# postgres and a database "test" (scripts/test.sh's default URI).
if ! command -v pg_isready >/dev/null 2>&1; then
	say "postgresql: installing from Debian's packages"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
fi
if pg_isready -q -h 127.0.0.1; then
	say "postgresql: running"
else
	say "postgresql: not answering on 127.0.0.1, starting it"
	if [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null 2>&1; then
		for v in $(ls /etc/postgresql); do
			as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
		done
	fi
	for _ in $(seq 1 50); do
		pg_isready -q -h 127.0.0.1 && break
		sleep 0.2
	done
	if pg_isready -q -h 127.0.0.1; then
		say "postgresql: running"
	else
		die "postgresql: still not answering on 127.0.0.1"
	fi
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
	# A fresh Debian install asks for a password over TCP: trust the user
	# postgres on loopback, for these tests (this is a test machine).
	say "postgresql: trusting the user postgres on 127.0.0.1"
	for hba in /etc/postgresql/*/main/pg_hba.conf; do
		as_root sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
	done
	for v in $(ls /etc/postgresql); do
		as_root pg_ctlcluster --skip-systemctl-redirect "$v" main reload || true
	done
	sleep 1
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1; then
	say "postgresql: creating the database test"
	psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test' || die "postgresql: cannot create the database test"
fi

say "done"
