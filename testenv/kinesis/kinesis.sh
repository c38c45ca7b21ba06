#!/usr/bin/env bash
# kinesalite, the Kinesis emulator weir's tests run against, pinned in
# package.json / package-lock.json and installed from the npm registry into
# the git-ignored node_modules/ (`npm ci --ignore-scripts`: kinesalite keeps
# its data in memory through memdown; leveldown, whose install script would
# build a native module, is only used with --path, which we never pass).
# Needs Node.js and npm.
#
#   kinesis.sh setup            install the pinned kinesalite unless it is there
#   kinesis.sh start [--dir D]  start it on a free loopback port in the
#                               background; prints its endpoint (http://127.0.0.1:PORT)
#   kinesis.sh stop [--dir D]   stop it (SIGTERM, SIGKILL after 5s)
#   kinesis.sh endpoint [--dir D]  print the endpoint of the running one
#
# The Go tests do not need start/stop: internal/testenv.Kinesis(t) runs
# `kinesis.sh setup` and starts a kinesalite of the test's own. State (pid,
# port, log) lives in --dir D, else $WEIR_KINESIS_DIR, else
# ${TMPDIR:-/tmp}/weir-kinesis-$UID. Messages go to stderr; stdout carries
# only what a caller captures.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { echo "kinesis.sh: $*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

cmd=${1:-}
case $cmd in ""|-h|--help|help) usage ;; esac
shift
dir=${WEIR_KINESIS_DIR:-${TMPDIR:-/tmp}/weir-kinesis-$(id -u)}
while [ $# -gt 0 ]; do
  case $1 in
    --dir) dir=${2:?--dir needs a folder}; shift 2 ;;
    --dir=*) dir=${1#*=}; shift ;;
    *) say "unknown argument: $1"; usage ;;
  esac
done

# setup runs npm ci unless node_modules matches the current lock file
# (node_modules/.lock.sha256 records which one). flock keeps test binaries
# that start at once from installing over each other.
setup() {
  command -v node >/dev/null || die "node is not on PATH (kinesalite needs Node.js)"
  command -v npm >/dev/null || die "npm is not on PATH (needed to install kinesalite)"
  exec 9>"$here/.setup.lock"
  flock 9
  local sum
  sum=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
  if [ -f "$here/node_modules/.lock.sha256" ] && [ "$(cat "$here/node_modules/.lock.sha256")" = "$sum" ] &&
    [ -f "$here/node_modules/kinesalite/package.json" ]; then
    return
  fi
  say "installing kinesalite from the npm registry into $here/node_modules"
  (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2 ||
    die "npm ci failed in $here"
  echo "$sum" >"$here/node_modules/.lock.sha256"
}

running() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

start() {
  setup
  mkdir -p "$dir"
  if running; then die "already running (pid $(cat "$dir/pid")); stop it first"; fi
  : >"$dir/log"
  nohup node "$here/serve.js" 0 >"$dir/log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  local i
  for i in $(seq 1 100); do
    if grep -q '^listening ' "$dir/log"; then
      sed -n 's/^listening //p' "$dir/log" | head -1 >"$dir/port"
      endpoint
      return
    fi
    running || die "kinesalite exited at start: $(tail -5 "$dir/log")"
    sleep 0.1
  done
  die "kinesalite did not start within 10s: $(tail -5 "$dir/log")"
}

stop() {
  running || { rm -f "$dir/pid" "$dir/port"; return; }
  local pid
  pid=$(cat "$dir/pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/pid" "$dir/port"
}

endpoint() {
  [ -f "$dir/port" ] || die "not running (no $dir/port)"
  echo "http://127.0.0.1:$(cat "$dir/port")"
}

case $cmd in
  setup) setup ;;
  start) start ;;
  stop) stop ;;
  endpoint) endpoint ;;
  *) say "unknown command: $cmd"; usage ;;
esac
