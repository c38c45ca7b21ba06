#!/usr/bin/env bash
# Installs the pinned dependencies of the Python and TypeScript handler SDKs,
# so that the conformance suite (plugins/conformance) and the examples run
# their handlers:
#   - Python: a venv at plugins/sdk/python/.venv with
#     plugins/sdk/python/requirements.txt (the conformance suite and
#     examples/etl/weir.yaml use that venv's python);
#   - TypeScript: npm ci in plugins/sdk/typescript, then npm run build
#     (tsc) to plugins/sdk/typescript/dist (not committed).
# Idempotent: a step whose inputs did not change since it last succeeded is
# skipped. Exits non-zero if anything fails. Needs python3 (3.11+) with the
# venv module, and node 20+ with npm.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py_dir=$root/plugins/sdk/python
ts_dir=$root/plugins/sdk/typescript

say() { printf 'testenv/sdk.sh: %s\n' "$*"; }

# --- Python ---------------------------------------------------------------
python=${PYTHON:-python3}
command -v "$python" >/dev/null || { say "python3 not found; install Python 3.11+"; exit 1; }
venv=$py_dir/.venv
stamp=$venv/.weir-requirements
if [[ ! -x $venv/bin/python ]]; then
	say "creating venv $venv with $($python --version 2>&1)"
	"$python" -m venv "$venv"
fi
if [[ -f $stamp ]] && cmp -s "$stamp" "$py_dir/requirements.txt" && "$venv/bin/python" -c 'import grpc, grpc_health.v1.health, google.protobuf' 2>/dev/null; then
	say "python deps up to date in $venv"
else
	say "installing $py_dir/requirements.txt into $venv"
	"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$py_dir/requirements.txt"
	cp "$py_dir/requirements.txt" "$stamp"
	say "python deps installed: $("$venv/bin/python" -m pip freeze --disable-pip-version-check | tr '\n' ' ')"
fi

# --- TypeScript -----------------------------------------------------------
command -v node >/dev/null || { say "node not found; install Node.js 20+"; exit 1; }
command -v npm >/dev/null || { say "npm not found; install npm"; exit 1; }
lockstamp=$ts_dir/node_modules/.weir-package-lock.json
if [[ -f $lockstamp ]] && cmp -s "$lockstamp" "$ts_dir/package-lock.json"; then
	say "npm deps up to date in $ts_dir/node_modules"
else
	say "npm ci in $ts_dir (node $(node --version))"
	(cd "$ts_dir" && npm ci --no-audit --no-fund --loglevel=error)
	cp "$ts_dir/package-lock.json" "$lockstamp"
fi
say "building the TypeScript SDK and handlers (tsc) into $ts_dir/dist"
(cd "$ts_dir" && npm run --silent build)
for d in "$root"/examples/*/typescript; do
	[[ -f $d/package.json ]] || continue
	say "building $d"
	(cd "$d" && npm run --silent build)
done
say "done"
