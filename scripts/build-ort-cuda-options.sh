#!/usr/bin/env bash
# Builds the ort_cuda_options Node addon (native/ort-cuda-options) into OUT_DIR (default build/ort-cuda-options):
# it hands --cuda-options (ONNX Runtime CUDA provider options) to the CUDA provider, which onnxruntime-node cannot.
# Needs only gcc (Node-API is declared in the source; no node headers). Usage: scripts/build-ort-cuda-options.sh [OUT_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/build/ort-cuda-options}"
cc="${CC:-gcc}"
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "build-ort-cuda-options: $cc not found; install it (Debian/Ubuntu: apt-get install -y gcc)" >&2
  exit 2
fi
mkdir -p "$out"
# undefined napi_* symbols are resolved against the node executable when Node loads the addon
"$cc" -shared -fPIC -O2 -Wall -Wextra -fvisibility=hidden -o "$out/ort_cuda_options.node" \
  "$root/native/ort-cuda-options/ort_cuda_options.c" -ldl -lpthread
echo "build-ort-cuda-options: built $out/ort_cuda_options.node"
