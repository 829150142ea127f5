#!/usr/bin/env bash
# The H200 bench runs, from the project root on the device machine (after .device/ and dist/ travel):
#   bash server/bench/device-run.sh sd15|sdxl|... 
# Each case writes its JSON report to $OUT/<case>.json; logs go to $OUT/log-<set>.txt. Checkpoints and graph caches
# live in /tmp/tcd-bench (they survive between calls only while the machine stays warm).
set -u
set=${1:-sd15}
out=${OUT:-/tmp/out}; mkdir -p "$out"
exec > >(tee -a "$out/log-$set.txt") 2>&1
source .device/setup.sh >/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm --format=csv,noheader
B="node dist/server/bench.js"
bench() { # name, timeout seconds, env..., -- bench args
  local name=$1 limit=$2; shift 2
  local envs=(); while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  local t0=$SECONDS
  env "${envs[@]}" timeout "$limit" $B "$@" --out "$out/$name.json" > /dev/null
  echo "== $name rc=$? $((SECONDS - t0)) s: $(node -e "try{const r=require('$out/$name.json');console.log(JSON.stringify({ep:r.ep,...r.summary,gpuMiB:r.memory.gpuPeakAboveBaselineMiB,cold:r.cold}))}catch(e){console.log('no report')}")"
}
case $set in
  sd15)
    bench demo-webgpu 120 X=1 -- --arch demo --size 256 --steps 4 --ep webgpu --images 1
    bench sd15-webgpu-fused 300 X=1 -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 3
    bench sd15-webgpu-plain 150 TCD_GPU_ATTENTION=plain -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 2
    bench sd15-webgpu-nchw 120 TCD_GPU_LAYOUT=NCHW -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 2
    mkdir -p /tmp/prof && rm -f /tmp/prof/*
    bench sd15-webgpu-profile 120 TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1
    node dist/server/bench/profile-summary.js /tmp/prof/*.json > "$out/sd15-profile-summary.json"
    ls -la /tmp/prof
    ;;
  sdxl)
    bench sdxl-webgpu-fused 420 X=1 -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 2
    mkdir -p /tmp/prof && rm -f /tmp/prof/*
    bench sdxl-webgpu-profile 120 TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 1
    node dist/server/bench/profile-summary.js /tmp/prof/*.json > "$out/sdxl-profile-summary.json"
    ;;
  final)
    bench sd15-webgpu 300 X=1 -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 3
    bench sd15-webgpu-graphcapture 90 TCD_GPU_GRAPH_CAPTURE=1 -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1
    mkdir -p /tmp/prof && rm -f /tmp/prof/*
    bench sd15-webgpu-profile 120 TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1
    node dist/server/bench/profile-summary.js /tmp/prof/*unet*.json > "$out/sd15-unet-profile.json"
    bench sdxl-webgpu 400 X=1 -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 2
    bench sdxl-webgpu-simplecache 120 TCD_GPU_BUFFER_CACHE=simple -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 1
    rm -f /tmp/prof/*
    bench sdxl-webgpu-profile 120 TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 1
    node dist/server/bench/profile-summary.js /tmp/prof/*.json > "$out/sdxl-profile.json"
    rm -f "$out/sd15-webgpu-profile.json" "$out/sdxl-webgpu-profile.json"
    ;;
esac
echo "== done $set in $SECONDS s"
