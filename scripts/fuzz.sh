#!/usr/bin/env bash
# Runs every fuzz target of the bridge (each "func FuzzX" in a *_test.go),
# one after the other, for FUZZ_TIME each (Go's -fuzztime: a duration such
# as 30s or 20m, or a count of executions such as 10000000x), and prints
# how many inputs each ran. A crash stops the run; Go writes the input
# that caused it under the package's testdata/fuzz/, where plain
# "go test" replays it from then on.
#
#   FUZZ_TIME=10s bash scripts/fuzz.sh       # the default; CI runs 5s
#   FUZZ_TIME=20m bash scripts/fuzz.sh       # a long run
#   FUZZ_ONLY=FuzzDecodeTxn bash scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

time="${FUZZ_TIME:-10s}"
summary=()
while IFS=: read -r file target; do
	pkg="./$(dirname "$file")"
	if [ -n "${FUZZ_ONLY:-}" ] && [ "$target" != "$FUZZ_ONLY" ]; then
		continue
	fi
	echo "== $pkg $target ($time)"
	log="$(mktemp)"
	for try in 1 2; do
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" "$pkg" 2>&1 | tee "$log" | grep -v '^fuzz: elapsed:.*execs' ; then
			:
		fi
		# Go's fuzzer sometimes stops a run with "context deadline
		# exceeded" when a worker answers late at the end of -fuzztime on
		# a loaded machine; that is no crash (no input is written), so
		# the target runs once more. A real crash says "Failing input
		# written to" and is never retried.
		if grep -q '^ok' "$log" || grep -q 'Failing input written' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
			break
		fi
		echo "fuzz: $target stopped by Go's fuzzer deadline, not by an input; running it again"
	done
	if ! grep -q '^ok' "$log"; then
		echo "fuzz: $target failed"
		tail -40 "$log"
		rm -f "$log"
		exit 1
	fi
	execs="$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
	summary+=("$(printf '%-28s %-14s %12s inputs, 0 crashes' "$target" "$pkg" "${execs:-?}")")
	rm -f "$log"
done < <(grep -o '^func Fuzz[A-Za-z0-9_]*' -r --include='*_test.go' . | sed 's#^\./##; s#:func #:#' | sort)

echo "== fuzzing: $time a target"
printf '%s\n' "${summary[@]}"
