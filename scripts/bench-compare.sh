#!/usr/bin/env bash
# Before and after in one run: bench:load on another revision and on this tree, alternating.
#   scripts/bench-compare.sh REV [ROUNDS]        (npm run bench:compare -- REV [ROUNDS])
# REV is built in a temporary git worktree (node_modules shared with this tree), then the two take
# turns, ROUNDS (default 3) times each, so drift on a shared machine hits both alike. Settings pass
# through: BENCH_SCENARIOS (default single,batch), BENCH_CONNECTIONS (64), BENCH_SECONDS (8).
# Prints each run's table and, last, one line per scenario: the median of each side and the change.
set -euo pipefail
rev=${1:?usage: scripts/bench-compare.sh REV [ROUNDS]}; rounds=${2:-3}
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"; before="$work/before"
cleanup() { git -C "$here" worktree remove --force "$before" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
git -C "$here" worktree add --detach "$before" "$rev" >/dev/null
ln -s "$here/node_modules" "$before/node_modules"
(cd "$before" && npm run build --silent)
(cd "$here" && npm run build --silent)
export BENCH_SCENARIOS=${BENCH_SCENARIOS:-single,batch} BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-64} BENCH_SECONDS=${BENCH_SECONDS:-8}
for i in $(seq 1 "$rounds"); do
  for side in before after; do
    dir=$([ $side = before ] && echo "$before" || echo "$here")
    echo "== round $i: $side ($(git -C "$dir" rev-parse --short HEAD)$([ $side = after ] && ! git -C "$dir" diff --quiet HEAD && echo '+changes'))" >&2
    (cd "$dir" && node dist/bench/load.js) > "$work/$side.$i.out"
    sed -n '1,/^$/p' "$work/$side.$i.out" >&2
  done
done
node "$here/dist/bench/compare-summary.js" "$work" "$rounds"
