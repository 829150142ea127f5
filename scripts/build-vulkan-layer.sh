#!/usr/bin/env bash
# Builds VK_LAYER_TCD_device_select (native/vulkan-device-select) into OUT_DIR (default build/vulkan-layer):
#   libVkLayer_tcd_device_select.so  the layer
#   VkLayer_tcd_device_select.json   its manifest (library_path is relative to it)
#   list_devices                     a small lister for checking the layer (see native/vulkan-device-select/README.md)
# Needs gcc and the Vulkan headers + loader link library (Debian/Ubuntu: apt-get install -y gcc libvulkan-dev).
# Usage: scripts/build-vulkan-layer.sh [OUT_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/native/vulkan-device-select"
out="${1:-$root/build/vulkan-layer}"
cc="${CC:-gcc}"

if ! command -v "$cc" >/dev/null 2>&1; then
  echo "build-vulkan-layer: $cc not found; install it (Debian/Ubuntu: apt-get install -y gcc)" >&2
  exit 2
fi
if ! printf '#include <vulkan/vulkan.h>\n#include <vulkan/vk_layer.h>\n' | "$cc" -E -x c - >/dev/null 2>&1; then
  echo "build-vulkan-layer: Vulkan headers (vulkan/vulkan.h, vulkan/vk_layer.h) not found; install them (Debian/Ubuntu: apt-get install -y libvulkan-dev)" >&2
  exit 2
fi

mkdir -p "$out"
"$cc" -shared -fPIC -O2 -Wall -Wextra -fvisibility=hidden -o "$out/libVkLayer_tcd_device_select.so" "$src/device_select_layer.c" -lpthread
cp "$src/VkLayer_tcd_device_select.json" "$out/"
if ! "$cc" -O2 -Wall -Wextra -o "$out/list_devices" "$src/list_devices.c" -lvulkan 2>"$out/list_devices.log"; then
  cat "$out/list_devices.log" >&2
  echo "build-vulkan-layer: could not link list_devices against libvulkan (Debian/Ubuntu: apt-get install -y libvulkan-dev)" >&2
  exit 2
fi
rm -f "$out/list_devices.log"
echo "build-vulkan-layer: built $out"
