#!/usr/bin/env bash
# `npm run lint` (after Biome): the documents made from docs/openapi.json are in step with it.
#   - client/src/schema.ts is exactly what `npm run client:generate` writes (run it and commit);
#   - redocly lint finds no error and no warning in docs/openapi.json (redocly.yaml).
# Static checks of committed files, so they run with the linter rather than in npm test, where
# their ~5 CPU-s of CLI starts competed with the servers (docs/PERFORMANCE.md "Test suite time").
# That docs/openapi.json is what the server serves stays a test (test/openapi.test.ts).
set -euo pipefail
cd "$(dirname "$0")/.."

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# The command of `npm run client:generate`, writing into the scratch folder instead.
generate="$(node -p "require('./package.json').scripts['client:generate']")"
case "$generate" in
  openapi-typescript*client/src/schema.ts*) ;;
  *) echo "check-documents: client:generate is no longer an openapi-typescript run writing client/src/schema.ts: $generate" >&2; exit 1 ;;
esac
# shellcheck disable=SC2086 # the script's own words, split as npm would
node_modules/.bin/${generate//client\/src\/schema.ts/$scratch/schema.ts} >/dev/null
if ! cmp -s "$scratch/schema.ts" client/src/schema.ts; then
  echo "client/src/schema.ts is stale: run \`npm run client:generate\` and commit it" >&2
  exit 1
fi

status=0
report="$(REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_COLOR=1 node_modules/.bin/redocly lint docs/openapi.json 2>&1)" || status=$?
if [ "$status" != 0 ] || ! grep -q 'Your API description is valid' <<<"$report" || grep -qE 'You have [0-9]+ warnings?' <<<"$report"; then
  echo "$report" >&2
  echo "redocly lint: docs/openapi.json has errors or warnings (above)" >&2
  exit 1
fi
echo "documents: client/src/schema.ts matches docs/openapi.json; redocly lint: no error, no warning"
