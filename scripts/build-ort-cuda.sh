#!/usr/bin/env bash
# Builds the ort_cuda Node addon (native/ort-cuda) into OUT_DIR (default build/ort-cuda): --cuda-options for
# onnxruntime-node's CUDA sessions, and sessions with fixed GPU bindings for CUDA graphs (--cuda-graph).
# Needs only gcc (Node-API is declared in the source; no node headers). Usage: scripts/build-ort-cuda.sh [OUT_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/native/ort-cuda"
out="${1:-$root/build/ort-cuda}"
cc="${CC:-gcc}"
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "build-ort-cuda: $cc not found; install it (Debian/Ubuntu: apt-get install -y gcc)" >&2
  exit 2
fi
mkdir -p "$out"
# undefined napi_* symbols are resolved against the node executable when Node loads the addon
"$cc" -shared -fPIC -O2 -Wall -Wextra -fvisibility=hidden -o "$out/ort_cuda.node" \
  "$src/addon.c" "$src/provider_options.c" "$src/graph_session.c" "$src/shared_arena.c" -ldl -lpthread
echo "build-ort-cuda: built $out/ort_cuda.node"
