#!/usr/bin/env bash
# The H200 bench runs, from the project root on the device machine (after .device/ and dist/ travel):
#   bash server/tools/bench/device-run.sh sd15|sdxl|... 
# Each case writes its JSON report to $OUT/<case>.json; logs go to $OUT/log-<set>.txt. Checkpoints and graph caches
# live in /tmp/tcd-bench (they survive between calls only while the machine stays warm).
set -u
set=${1:-sd15}
out=${OUT:-/tmp/out}; mkdir -p "$out"
exec > >(tee -a "$out/log-$set.txt") 2>&1
source .device/setup.sh >/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm --format=csv,noheader
B="node dist/server/tools/bench.js"
# CUDA cases: the pinned onnxruntime-node 1.29.0 and the provider (its parts in /root/cuda-parts, sent by earlier calls)
cuda_setup() {
  export LD_LIBRARY_PATH=/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
  tar xJf .device/cuda-ort-1.29.0.tar.xz
  if ls /root/cuda-parts/part.* >/dev/null 2>&1; then cat /root/cuda-parts/part.* > /tmp/cuda-provider.tgz; fi
  node dist/server/setup-cuda.js --tarball /tmp/cuda-provider.tgz; echo "== setup:cuda rc=$?"
}
# the random SDXL checkpoint (CPU only) is written while the GPU does the rest; `wait $ckpt` before using it
sdxl_checkpoint_in_background() {
  (node -e "import('./dist/server/tools/bench/run.js').then(m=>m.benchCheckpoint('sdxl',console.error)).then(r=>console.log('== sdxl ckpt',JSON.stringify(r)))") &
  ckpt=$!
}
# the random SD1.5 checkpoint, written once per machine
sd15_checkpoint() {
  node -e "import('./dist/server/tools/bench/run.js').then(m=>m.benchCheckpoint('sd15',console.error)).then(r=>console.log('== sd15 ckpt',JSON.stringify(r)))"
}
# each named report's last image (mean, min, max: same seeds should agree) and its memory figures
show_images() {
  for f in "$@"; do
    node -e "try{const r=require('$out/$f.json');console.log('== $f image',JSON.stringify(r.lastImage),JSON.stringify(r.memory))}catch(e){}"
  done
}
# where a run's GPU memory went (its ONNX Runtime log, see bench()): per-arena totals and the largest growths
arenas() {
  node dist/server/tools/bench/arena-summary.js "/tmp/ort-$1.log" > "$out/arenas-$1.json"
  node -e "const s=Object.values(require('$out/arenas-$1.json'))[0];const M=(b)=>Math.round(b/1048576);for(const[k,t]of Object.entries(s.allocators))console.log('== arenas $1',k,JSON.stringify({arenas:t.arenas,reserves:t.reserves,reservedMiB:M(t.reservedBytes),extensions:t.extensions,extendedMiB:M(t.extendedBytes)}));for(const g of s.largest.slice(0,8))console.log('   growth',g.allocator,M(g.requestedBytes),'->',M(g.extendedBytes),'MiB after',g.after)"
}
# fixture-check.js with the GPU knobs in env (fixtures in /root/fx, sent by earlier calls): name, timeout, env...
fixture_check() {
  local name=$1 limit=$2; shift 2
  env "$@" timeout "$limit" node dist/server/tools/bench/fixture-check.js --fixtures /root/fx --ep cuda --out "$out/$name.json" > /dev/null 2> "$out/log-$name.txt"
  echo "== $name rc=$?: $(node -e "const r=require('$out/$name.json');console.log(r.ep,JSON.stringify([...r.components,...r.pipelines].map(c=>[c.name,c.pass,+(c.maxDiff).toPrecision(3),c.fractionOver2])))" 2>&1)"
}
bench() { # name, timeout seconds, env..., -- bench args
  local name=$1 limit=$2; shift 2
  local envs=(); while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  local t0=$SECONDS err=/dev/stderr
  # with ONNX Runtime's own log on (TCD_ORT_LOG_LEVEL), it goes to a file of its own, for arenas() to read
  [[ " ${envs[*]}" == *" TCD_ORT_LOG_LEVEL="* ]] && err=/tmp/ort-$name.log
  env "${envs[@]}" timeout "$limit" $B "$@" --out "$out/$name.json" > /dev/null 2> "$err"
  echo "== $name rc=$? $((SECONDS - t0)) s: $(node -e "try{const r=require('$out/$name.json');console.log(JSON.stringify({ep:r.ep,...r.summary,gpuMiB:r.memory.gpuPeakAboveBaselineMiB,cold:r.cold}))}catch(e){console.log('no report')}")"
}
case $set in
  cudaopts) # --cuda-options (native/ort-cuda): the options reach the provider ("in effect" log lines), then
    # SD1.5 512 with ORT's defaults, channels-last convolutions inside ORT (prefer_nhwc), heuristic cuDNN search (first
    # calls), and the memory pair (pool grows by what is asked, no max cuDNN workspace); < 540 s
    cuda_setup
    sd15_checkpoint
    bench sd15-cuda 100 X=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    bench sd15-cuda-nhwc 100 TCD_CUDA_OPTIONS=prefer_nhwc=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    bench sd15-cuda-heuristic 100 TCD_CUDA_OPTIONS=cudnn_conv_algo_search=HEURISTIC -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    bench sd15-cuda-mem $((530 - SECONDS)) TCD_CUDA_OPTIONS=arena_extend_strategy=kSameAsRequested,cudnn_conv_use_max_workspace=0 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    grep -h "CUDA provider options" "$out/log-$set.txt" | sort | uniq -c
    show_images sd15-cuda sd15-cuda-nhwc sd15-cuda-heuristic sd15-cuda-mem
    ;;
  graphs) # the short round for a tight lease: --cuda-graph on SD1.5 512 against the plain CUDA session (same seeds:
    # lastImage should agree), the fixtures with the graph path against diffusers (fp16), SDXL 1024 with graphs and
    # ONNX Runtime's arena log (the memory profile); < 560 s
    sdxl_checkpoint_in_background
    cuda_setup
    sd15_checkpoint
    bench sd15-cuda 90 X=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 3
    bench sd15-cuda-graph 80 TCD_CUDA_GRAPH=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 3
    if [ -f /root/fx/sdxl_tiny.safetensors ]; then # the fixtures, when a lease had the time to send them
      fixture_check fixtures-graph1 100 TCD_CUDA_GRAPH=1
    fi
    wait $ckpt
    bench sdxl-cuda-graph $((555 - SECONDS)) TCD_CUDA_GRAPH=1 TCD_ORT_LOG_LEVEL=info -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    arenas sdxl-cuda-graph
    grep -h "CUDA graph" /tmp/ort-sdxl-cuda-graph.log "$out/log-$set.txt" | sort | uniq -c | head
    show_images sd15-cuda sd15-cuda-graph sdxl-cuda-graph
    ;;
  cudagraph) # --cuda-graph: the UNet in a session with fixed GPU bindings replaying one CUDA graph per shape
    # (native/ort-cuda graph_session.c), vs onnxruntime-node's session, SD1.5 512 (cfg 1 and the batch-2 CFG shape;
    # same seeds: lastImage should agree), then the fixtures with the graph path (components and pipelines, incl.
    # batched CFG, against diffusers at fp16; fixtures in /root/fx, sent by earlier calls); < 560 s
    cuda_setup
    sd15_checkpoint
    bench sd15-cuda 90 X=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    bench sd15-cuda-graph 90 TCD_CUDA_GRAPH=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    bench sd15-cuda-cfg 90 X=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 3 --cfg 2
    bench sd15-cuda-graph-cfg 90 TCD_CUDA_GRAPH=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 3 --cfg 2
    grep -h "CUDA graph\|cuda-graph\|capture" "$out/log-$set.txt" | sort | uniq -c | head
    for g in 0 1; do # the fixtures (incl. the SDXL pipelines with the fp16 VAE) without, then with the graph path
      fixture_check fixtures-graph$g 100 TCD_CUDA_GRAPH=$g
    done
    show_images sd15-cuda sd15-cuda-graph sd15-cuda-cfg sd15-cuda-graph-cfg
    ;;
  cudagraph-xl) # SDXL 1024 with the current defaults (fp16 VAE with the scaled stream, loops without per-step
    # acknowledgements, BiasSplitGelu; ONNX Runtime's log on for the memory profile), then --cuda-graph, the memory
    # options, and the fp32 VAE, each against the first (same seeds: lastImage should agree); graphs are built by the
    # first run only; < 560 s
    sdxl_checkpoint_in_background
    cuda_setup
    wait $ckpt
    bench sdxl-cuda 220 TCD_ORT_LOG_LEVEL=info -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    arenas sdxl-cuda
    bench sdxl-cuda-graph 100 TCD_CUDA_GRAPH=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    bench sdxl-cuda-mem 100 TCD_ORT_LOG_LEVEL=info TCD_CUDA_OPTIONS=arena_extend_strategy=kSameAsRequested,cudnn_conv_use_max_workspace=0 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    arenas sdxl-cuda-mem
    bench sdxl-cuda-vae32 $((555 - SECONDS)) TCD_VAE_PRECISION=fp32 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    grep -h "CUDA graph\|CUDA provider options" "$out/log-$set.txt" | sort | uniq -c | head
    show_images sdxl-cuda sdxl-cuda-graph sdxl-cuda-mem sdxl-cuda-vae32
    ;;
  memprofile) # where SDXL 1024's GPU memory goes (17 GB peak vs the 12 GB target): ONNX Runtime's own log at info
    # has every arena made, reserved for weights and grown; with the provider's defaults, then the memory options,
    # then those with one arena shared by all sessions (--shared-arena); same seeds: lastImage should agree; < 540 s
    sdxl_checkpoint_in_background
    cuda_setup
    wait $ckpt
    mem=arena_extend_strategy=kSameAsRequested,cudnn_conv_use_max_workspace=0
    bench sdxl-cuda 220 TCD_ORT_LOG_LEVEL=info -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 2
    arenas sdxl-cuda
    bench sdxl-cuda-mem 120 TCD_ORT_LOG_LEVEL=info TCD_CUDA_OPTIONS=$mem -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 2
    arenas sdxl-cuda-mem
    bench sdxl-cuda-shared $((530 - SECONDS)) TCD_ORT_LOG_LEVEL=info TCD_CUDA_OPTIONS=$mem TCD_SHARED_ARENA=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 2
    arenas sdxl-cuda-shared
    node -e "try{console.log(require('$out/sdxl-cuda-shared.json').engineLog.filter(l=>/arena/.test(l)).join('\\n'))}catch(e){}"
    show_images sdxl-cuda sdxl-cuda-mem sdxl-cuda-shared
    ;;
  cudaopts-xl) # the same options on SDXL 1024, where memory (17 GB vs the 12 GB target) and conv time matter; < 560 s
    sdxl_checkpoint_in_background
    cuda_setup
    wait $ckpt
    bench sdxl-cuda 200 X=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    bench sdxl-cuda-mem 120 TCD_CUDA_OPTIONS=arena_extend_strategy=kSameAsRequested,cudnn_conv_use_max_workspace=0 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    bench sdxl-cuda-nhwc $((555 - SECONDS)) TCD_CUDA_OPTIONS=prefer_nhwc=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    show_images sdxl-cuda sdxl-cuda-mem sdxl-cuda-nhwc
    ;;
  packed) # packed attention projections (TCD_GPU_PACKED_ATTENTION): one MatMul for self-attention q/k/v and one for
    # cross-attention k/v into MultiHeadAttention's packed QKV / KV inputs, vs three and two MatMuls; SD1.5 512 and SDXL
    # 1024 without and with the form (same seeds: lastImage should agree); < 540 s
    sdxl_checkpoint_in_background
    cuda_setup
    sd15_checkpoint
    bench sd15-cuda 90 TCD_GPU_PACKED_ATTENTION=0 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    bench sd15-cuda-packed 90 TCD_GPU_PACKED_ATTENTION=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    wait $ckpt
    bench sdxl-cuda 150 TCD_GPU_PACKED_ATTENTION=0 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    bench sdxl-cuda-packed $((535 - SECONDS)) TCD_GPU_PACKED_ATTENTION=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    show_images sd15-cuda sd15-cuda-packed sdxl-cuda sdxl-cuda-packed
    ;;
  packedcheck) # the packed attention form's contract on CUDA (max |diff| of packed QKV / KV against q, k, v apart, fp16)
    # and per-attention speed at the SD1.5 512 / SDXL 1024 shapes, with ORT's optimized-model op counts; < 200 s
    cuda_setup
    t0=$SECONDS; timeout 170 node dist/server/tools/bench/packed-attention-check.js --ep cuda --out "$out/packed-attention-check.json" > /dev/null 2> "$out/log-packed-check.txt"
    echo "== packed-attention-check rc=$? $((SECONDS - t0)) s"; cat "$out/log-packed-check.txt"
    ;;
  nhwc) # com.microsoft NhwcConv (TCD_GPU_NHWC_CONV): the operator's contract (weight layouts) and per-conv speed vs Conv
    # (nhwc-conv-check.js), then SD1.5 512 without and with the form (same seeds: lastImage should agree), then one
    # profiled image of each (per-operator GPU time, node placement); < 540 s
    (sd15_checkpoint) &
    ckpt=$!
    cuda_setup
    t0=$SECONDS; timeout 150 node dist/server/tools/bench/nhwc-conv-check.js --ep cuda --runs 50 --chain 20 --out "$out/nhwc-conv-check.json" > /dev/null 2> "$out/log-nhwc-check.txt"
    echo "== nhwc-conv-check rc=$? $((SECONDS - t0)) s"; cat "$out/log-nhwc-check.txt"
    wait $ckpt
    bench sd15-cuda 100 TCD_GPU_NHWC_CONV=0 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    bench sd15-cuda-nhwc 100 TCD_GPU_NHWC_CONV=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    show_images sd15-cuda sd15-cuda-nhwc
    for v in 0 1; do
      rm -rf /tmp/prof && mkdir -p /tmp/prof
      bench sd15-cuda-prof-$v $((525 - SECONDS > 80 ? 80 : 525 - SECONDS)) TCD_GPU_NHWC_CONV=$v TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sd15 --size 512 --steps 4 --ep cuda --images 1
      node dist/server/tools/bench/profile-summary.js /tmp/prof/*unet*.json > "$out/sd15-unet-ops-$v.json"
      node dist/server/tools/bench/profile-runs.js /tmp/prof/*unet*.json /tmp/prof/*vae_decoder*.json > "$out/sd15-runs-$v.json"
      rm -f "$out/sd15-cuda-prof-$v.json"
    done
    ;;
  cuda8) # fp16 SDXL VAE (scaled residual stream) vs fp32, the loops without per-step acknowledgements, SDXL with
    # BiasSplitGelu (defaults); the SDXL fixture pipelines at fp16 (fixtures in /root/fx, sent by an earlier call); < 560 s
    sdxl_checkpoint_in_background
    cuda_setup
    sd15_checkpoint
    bench sd15-cuda 90 X=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    fixture_check fixtures-sdxl 150 X=1
    wait $ckpt
    bench sdxl-cuda 200 X=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    bench sdxl-cuda-vae32 $((480 - SECONDS)) TCD_VAE_PRECISION=fp32 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    # the same VAE forms on WebGPU (random weights; finite and time)
    timeout $((555 - SECONDS)) node dist/server/tools/bench/vae-bench.js --arch sdxl --size 1024 --ep webgpu --runs 2 \
      --forms fp32:fused,fp16:fused > "$out/vae-webgpu.json" 2> /dev/null; echo "== vae-bench webgpu rc=$?"
    show_images sd15-cuda sdxl-cuda sdxl-cuda-vae32
    ;;
  cuda7) # com.microsoft BiasSplitGelu in the UNet feed-forwards vs Split + Gelu + Mul, SD1.5 512 (same seeds); < 200 s
    cuda_setup
    sd15_checkpoint
    bench sd15-cuda 80 X=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    bench sd15-cuda-geglu 80 TCD_GPU_FUSED_GEGLU=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    show_images sd15-cuda sd15-cuda-geglu
    ;;
  cuda6) # com.microsoft GroupNorm (+ SiLU) on CUDA vs the InstanceNormalization form, SD1.5 512 and SDXL 1024 (same
    # seeds: lastImage should agree); < 560 s
    sdxl_checkpoint_in_background
    cuda_setup
    sd15_checkpoint
    bench sd15-cuda 100 X=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    bench sd15-cuda-groupnorm 100 TCD_GPU_FUSED_GROUPNORM=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    wait $ckpt
    bench sdxl-cuda 150 X=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    bench sdxl-cuda-groupnorm $((560 - SECONDS)) TCD_GPU_FUSED_GROUPNORM=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    show_images sd15-cuda sd15-cuda-groupnorm sdxl-cuda sdxl-cuda-groupnorm
    ;;
  cuda5) # fp16 pixels on CUDA of the SDXL fixture pipelines, incl. sdxl_tcd_lora with the LoRA baked on the GPU from the
    # shared weight file (--external-data-min-mb 0) and in memory (default); fixtures in /root/fx (sent by an earlier call)
    cuda_setup
    for mode in shared-bake inline; do
      extra=(); [ $mode = shared-bake ] && extra=(--external-data-min-mb 0)
      timeout 200 node dist/server/tools/bench/fixture-check.js --fixtures /root/fx --ep cuda "${extra[@]}" --out "$out/fixtures-sdxl-$mode.json" > /dev/null 2> "$out/log-fixtures-$mode.txt"
      echo "== fixture-check $mode rc=$?: $(node -e "const r=require('$out/fixtures-sdxl-$mode.json');console.log(r.ep,JSON.stringify(r.pipelines.map(c=>[c.name,c.pass,+(c.maxDiff).toPrecision(3),c.fractionOver2])))" 2>&1)"
      grep -i "shares\|error" "$out/log-fixtures-$mode.txt" | head -5
    done
    ;;
  cuda4) # CUDA round 4: SDXL + TCD-style LoRA workflow from process start to the image on disk (`run`, first start on
    # the machine, then again with graphs cached); < 560 s
    sdxl_checkpoint_in_background
    cuda_setup
    wait $ckpt
    node -e "import('./dist/server/tools/bench/make-lora.js').then(m=>m.makeRandomLora({arch:'sdxl',rank:64,out:'/tmp/tcd-bench/sdxl-lora64.safetensors'})).then(r=>console.log('== lora',JSON.stringify(r)))"
    cs=/tmp/cold-start; rm -rf $cs; mkdir -p $cs/models/checkpoints $cs/models/loras
    ln -s /tmp/tcd-bench/sdxl.safetensors $cs/models/checkpoints/sd_xl_base_1.0.safetensors
    ln -s /tmp/tcd-bench/sdxl-lora64.safetensors $cs/models/loras/TCD-SDXL-LoRA.safetensors
    for pass in first cached; do
      t0=$(date +%s.%N)
      timeout 240 node dist/server/cli.js run workflows/tcd-sdxl-txt2img.json --ep cuda --no-demo --models $cs/models \
        --data $cs/data --output $cs/out-$pass > "$out/cold-start-$pass.txt" 2>&1
      rc=$?; t1=$(date +%s.%N)
      echo "== cold start ($pass): rc=$rc $(python3 -c "print(round($t1 - $t0, 1))") s, image: $(ls $cs/out-$pass 2>/dev/null | head -1)"
      tail -3 "$out/cold-start-$pass.txt"
    done
    bench sdxl-cuda 120 X=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    ;;
  cuda3) # CUDA round 3 (issue 14 point 6): first use of a rank-64 SDXL LoRA set on CUDA, bake vs branch, then the
    # same LoRA set again in a fresh process (its baked graph cached on disk); < 560 s
    sdxl_checkpoint_in_background
    cuda_setup
    wait $ckpt
    bench sdxl-cuda 200 X=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 2
    bench sdxl-lora-bake 150 TCD_GPU_LORA=bake -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3 --lora-rank 64
    node -e "const r=require('$out/sdxl-lora-bake.json');console.log('== bake loads',JSON.stringify(r.loads),JSON.stringify(r.cold))" 2>&1
    bench sdxl-lora-branch 150 TCD_GPU_LORA=branch -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3 --lora-rank 64
    node -e "const r=require('$out/sdxl-lora-branch.json');console.log('== branch loads',JSON.stringify(r.loads),JSON.stringify(r.cold))" 2>&1
    bench sdxl-lora-bake-cached 90 TCD_GPU_LORA=bake -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 2 --lora-rank 64
    node -e "const r=require('$out/sdxl-lora-bake-cached.json');console.log('== bake cached loads',JSON.stringify(r.loads),JSON.stringify(r.cold))" 2>&1
    ;;
  cuda2) # CUDA round 2: the worker k-sampler loop on CUDA (fixtures), steps without the profiler's overhead, SDXL cold
    # start from a fresh process with graphs cached on disk (what a user's second start sees); < 400 s
    sdxl_checkpoint_in_background
    cuda_setup
    t0=$SECONDS; timeout 90 node dist/server/tools/bench/fixture-check.js --fixtures .device/fixtures --ep cuda --out "$out/fixtures-cuda.json" > /dev/null
    echo "== fixture-check rc=$? $((SECONDS - t0)) s: $(node -e "const r=require('$out/fixtures-cuda.json');console.log(r.ep,r.ortVersion,JSON.stringify([...r.components,...r.pipelines].map(c=>[c.name,c.pass,+(c.maxDiff).toPrecision(3),c.fractionOver2])))" 2>&1)"
    bench sd15-cuda 120 X=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    bench sd15-cuda-fusedblocks 80 TCD_GPU_FUSED_BLOCKS=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 4
    wait $ckpt
    bench sdxl-cuda 200 X=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 4
    bench sdxl-cuda-cached 90 X=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    bench sdxl-cuda-fusedblocks $((410 - SECONDS)) TCD_GPU_FUSED_BLOCKS=1 -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    ;;
  cuda1) # CUDA (issue 14): install through setup:cuda, fp16 fixture checks, SD1.5 512 and SDXL 1024 benches,
    # per-run ORT profiles (cold first call, node placement), cold start with graphs and JIT cache on disk; < 540 s.
    # Needs: the provider package's parts in /root/cuda-parts (../shared/device/cuda-provider.sh), the pinned
    # onnxruntime-node in .device/cuda-ort-1.29.0.tar.xz, fixtures (sd1_tiny*, pipelines, comfy_ksampler) in .device/fixtures
    export LD_LIBRARY_PATH=/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
    # the random SDXL checkpoint (CPU only) is written while the GPU runs the rest
    (node -e "import('./dist/server/tools/bench/run.js').then(m=>m.benchCheckpoint('sdxl',console.error)).then(r=>console.log('== sdxl ckpt',JSON.stringify(r)))") &
    ckpt=$!
    tar xJf .device/cuda-ort-1.29.0.tar.xz
    if ls /root/cuda-parts/part.* >/dev/null 2>&1; then cat /root/cuda-parts/part.* > /tmp/cuda-provider.tgz; fi
    t0=$SECONDS; node dist/server/setup-cuda.js --tarball /tmp/cuda-provider.tgz; echo "== setup:cuda rc=$? $((SECONDS - t0)) s"
    node dist/server/setup-cuda.js --check; echo "== setup:cuda --check rc=$?"
    t0=$SECONDS; timeout 90 node dist/server/tools/bench/fixture-check.js --fixtures .device/fixtures --ep cuda --out "$out/fixtures-cuda.json" > /dev/null
    echo "== fixture-check rc=$? $((SECONDS - t0)) s: $(node -e "const r=require('$out/fixtures-cuda.json');console.log(r.ep,r.ortVersion,JSON.stringify([...r.components,...r.pipelines].map(c=>[c.name,c.pass,+(c.maxDiff).toPrecision(3),c.fractionOver2])))" 2>&1)"
    rm -rf /tmp/prof && mkdir -p /tmp/prof
    bench sd15-cuda-cold 150 TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sd15 --size 512 --steps 4 --ep cuda --images 3
    node dist/server/tools/bench/profile-runs.js /tmp/prof/*unet*.json /tmp/prof/*vae_decoder*.json > "$out/sd15-cuda-runs.json"
    node dist/server/tools/bench/profile-summary.js /tmp/prof/*unet*.json > "$out/sd15-cuda-unet-ops.json"
    # the same in a fresh process: graphs cached on disk, CUDA's JIT cache warm; what stays is per-process (cuDNN search)
    bench sd15-cuda-warmcache 60 X=1 -- --arch sd15 --size 512 --steps 4 --ep cuda --images 3
    wait $ckpt
    rm -rf /tmp/prof && mkdir -p /tmp/prof
    bench sdxl-cuda $((525 - SECONDS)) TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sdxl --size 1024 --steps 4 --ep cuda --images 3
    node dist/server/tools/bench/profile-runs.js /tmp/prof/*unet*.json /tmp/prof/*vae_decoder*.json > "$out/sdxl-cuda-runs.json"
    nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader
    ;;
  sd15)
    bench demo-webgpu 120 X=1 -- --arch demo --size 256 --steps 4 --ep webgpu --images 1
    bench sd15-webgpu-fused 300 X=1 -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 3
    bench sd15-webgpu-plain 150 TCD_GPU_ATTENTION=plain -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 2
    bench sd15-webgpu-nchw 120 TCD_GPU_LAYOUT=NCHW -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 2
    mkdir -p /tmp/prof && rm -f /tmp/prof/*
    bench sd15-webgpu-profile 120 TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1
    node dist/server/tools/bench/profile-summary.js /tmp/prof/*.json > "$out/sd15-profile-summary.json"
    ls -la /tmp/prof
    ;;
  sdxl)
    bench sdxl-webgpu-fused 420 X=1 -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 2
    mkdir -p /tmp/prof && rm -f /tmp/prof/*
    bench sdxl-webgpu-profile 120 TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 1
    node dist/server/tools/bench/profile-summary.js /tmp/prof/*.json > "$out/sdxl-profile-summary.json"
    ;;
  final)
    bench sd15-webgpu 300 X=1 -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 3
    bench sd15-webgpu-graphcapture 90 TCD_GPU_GRAPH_CAPTURE=1 -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1
    mkdir -p /tmp/prof && rm -f /tmp/prof/*
    bench sd15-webgpu-profile 120 TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1
    node dist/server/tools/bench/profile-summary.js /tmp/prof/*unet*.json > "$out/sd15-unet-profile.json"
    bench sdxl-webgpu 400 X=1 -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 2
    bench sdxl-webgpu-simplecache 120 TCD_GPU_BUFFER_CACHE=simple -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 1
    rm -f /tmp/prof/*
    bench sdxl-webgpu-profile 120 TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 1
    node dist/server/tools/bench/profile-summary.js /tmp/prof/*.json > "$out/sdxl-profile.json"
    rm -f "$out/sd15-webgpu-profile.json" "$out/sdxl-webgpu-profile.json"
    ;;
  issue8b) # LoRA on GPU (fed vs baked), linear forms, SDXL VAE mid-block attention forms; one call, < 600 s
    # the VAE forms need no checkpoint: they run while the SD1.5 checkpoint is written (CPU only)
    (timeout 200 node dist/server/tools/bench/vae-bench.js --arch sdxl --size 1024 --ep webgpu --runs 3 \
      --forms fp32:fused,fp32:plain,fp32:fused-fp16,fp32:plain-fp16,fp32:plain-fp16:matmul > "$out/sdxl-vae-forms.json" 2> "$out/log-vae.txt"; echo "== vae forms rc=$?") &
    vae=$!
    sd15_checkpoint
    wait $vae
    bench sd15-gemmT 110 TCD_GPU_LINEAR=gemm-transb -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1
    bench sd15-gemmT-lora-inputs 110 TCD_GPU_LINEAR=gemm-transb TCD_GPU_LORA=inputs -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1 --lora-rank 64
    bench sd15-gemmT-lora-bake 110 TCD_GPU_LINEAR=gemm-transb TCD_GPU_LORA=bake -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1 --lora-rank 64
    bench sd15-matmul 100 TCD_GPU_LINEAR=matmul -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1
    bench sd15-gemm 100 TCD_GPU_LINEAR=gemm -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1
    bench sd15-matmul-lora-bake 100 TCD_GPU_LINEAR=matmul TCD_GPU_LORA=bake -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1 --lora-rank 64
    ;;
  issue8c) # SDXL 1024: MatMul linears (default) vs Gemm(transB); GPU I/O floor per UNet call; SDXL with a baked LoRA
    node dist/server/tools/bench/io-overhead.js --ep webgpu --latent 64 --context 77x768 > "$out/io-sd15.json" 2>&1
    node dist/server/tools/bench/io-overhead.js --ep webgpu --latent 128 --context 77x2048 > "$out/io-sdxl.json" 2>&1
    cat "$out"/io-*.json
    node -e "import('./dist/server/tools/bench/run.js').then(m=>m.benchCheckpoint('sdxl',console.error)).then(r=>console.log('ckpt',JSON.stringify(r)))"
    bench sdxl-matmul 200 X=1 -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 1
    bench sdxl-gemmT 150 TCD_GPU_LINEAR=gemm-transb -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 1
    bench sdxl-matmul-lora-bake 180 X=1 -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 1 --lora-rank 64
    ;;
  issue8d) # SD1.5 512 with the new defaults: per-operator GPU time (where the remaining gap is)
    sd15_checkpoint
    bench sd15-default 100 X=1 -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 2
    mkdir -p /tmp/prof && rm -f /tmp/prof/*
    bench sd15-profile 60 TCD_ORT_PROFILE_DIR=/tmp/prof -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 1
    node dist/server/tools/bench/profile-summary.js /tmp/prof/*unet*.json > "$out/sd15-unet-profile.json"
    head -c 3000 "$out/sd15-unet-profile.json"
    rm -f "$out/sd15-profile.json"
    ;;
  issue8e) # the worker TCD loop (latents on the GPU) vs the per-call JS loop; graph capture on the worker loop; SD1.5 512
    sd15_checkpoint
    bench sd15-worker 150 X=1 -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 3 --loop worker
    bench sd15-js 90 X=1 -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 3 --loop js
    bench sd15-worker-capture 90 TCD_GPU_GRAPH_CAPTURE=1 -- --arch sd15 --size 512 --steps 4 --ep webgpu --images 2 --loop worker
    ;;
  issue8f) # SDXL 1024 with the worker loop
    node -e "import('./dist/server/tools/bench/run.js').then(m=>m.benchCheckpoint('sdxl',console.error)).then(r=>console.log('ckpt',JSON.stringify(r)))"
    bench sdxl-worker 300 X=1 -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 2 --loop worker
    bench sdxl-js 120 X=1 -- --arch sdxl --size 1024 --steps 4 --ep webgpu --images 1 --loop js
    ;;
  multi) # serve --devices on one host: one engine per GPU (WebGPU engines in pinned child processes), a burst of prompts
    nvidia-smi --query-gpu=index,pci.bus_id --format=csv,noheader
    for d in 0 0,1; do
      timeout 240 node dist/server/tools/bench/multi-gpu.js --devices $d --prompts 16 --arch sd15 --size 512 --ep webgpu > "$out/multi-${d/,/-}.json" 2> "$out/log-multi-${d/,/-}.txt"
      echo "== multi $d rc=$?: $(cat "$out/multi-${d/,/-}.json")"; grep -i -E "error|device" "$out/log-multi-${d/,/-}.txt" | head -5
    done
    ;;
  pin) # which GPU a WebGPU engine runs on: default, --device 0/1 (Vulkan device-select layer), two at once
    gpus() { nvidia-smi --query-gpu=index,memory.used --format=csv,noheader | tr '\n' ';'; }
    hold() { # name, env..., -- bench args: start, sample GPU memory after 20 s, stop
      local name=$1; shift; local envs=(); while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
      env "${envs[@]}" $B --arch demo --size 1024 --steps 4 --ep webgpu --images 2000 "$@" > /dev/null 2> "$out/pin-$name.txt" &
      local pid=$!; sleep 20
      echo "== pin $name: $(gpus) apps: $(nvidia-smi --query-compute-apps=pid,gpu_bus_id,used_memory --format=csv,noheader | tr '\n' ';')"
      kill $pid 2>/dev/null; wait $pid 2>/dev/null; grep -i -E "device|vulkan|adapter|error" "$out/pin-$name.txt" | head -5
    }
    nvidia-smi --query-gpu=index,pci.bus_id,uuid --format=csv,noheader
    echo "== idle: $(gpus)"
    hold default X=1 --
    hold device1 X=1 -- --device 1
    hold device0 X=1 -- --device 0
    hold cudavisible1 CUDA_VISIBLE_DEVICES=1 --
    ( env $B --arch demo --size 1024 --steps 4 --ep webgpu --images 2000 --device 0 > /dev/null 2>&1 & p0=$!
      env $B --arch demo --size 1024 --steps 4 --ep webgpu --images 2000 --device 1 > /dev/null 2>&1 & p1=$!
      sleep 25; echo "== pin both: $(gpus)"; kill $p0 $p1; wait ) 2>/dev/null
    ;;
esac
echo "== done $set in $SECONDS s"
