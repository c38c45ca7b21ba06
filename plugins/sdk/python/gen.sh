#!/usr/bin/env bash
# Regenerates weir_sdk/_pb/*_pb2*.py from the protocol's .proto files:
#   - plugins/proto/weir/handler/v1/handler.proto (the weir handler protocol),
#   - go-plugin's internal/plugin/grpc_controller.proto (Shutdown), from the
#     go-plugin version in go.mod,
#   - weir_sdk/_pb/status.proto (a wire-compatible google.rpc.Status).
# Run from anywhere after testenv/sdk.sh (it needs grpcio-tools in the venv):
#   plugins/sdk/python/gen.sh
# The generated files are committed; regenerate them when a .proto changes or
# when the pinned protobuf version changes (the generated code checks the
# runtime's version).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
py=${WEIR_PYTHON:-$here/.venv/bin/python}
goplugin=$(cd "$root" && go list -m -f '{{.Dir}}' github.com/hashicorp/go-plugin)
cd "$here"
# -I VIRTUAL=DIR maps each .proto into the package weir_sdk._pb, so the
# generated imports are "from weir_sdk._pb import ...".
"$py" -m grpc_tools.protoc \
	-Iweir_sdk/_pb="$root/plugins/proto/weir/handler/v1" \
	-Iweir_sdk/_pb="$goplugin/internal/plugin" \
	-Iweir_sdk/_pb=weir_sdk/_pb \
	--python_out=. --grpc_python_out=. \
	weir_sdk/_pb/handler.proto weir_sdk/_pb/grpc_controller.proto
"$py" -m grpc_tools.protoc -Iweir_sdk/_pb=weir_sdk/_pb --python_out=. weir_sdk/_pb/status.proto
echo "regenerated $(ls weir_sdk/_pb/*_pb2*.py | wc -l) files in $here/weir_sdk/_pb"
