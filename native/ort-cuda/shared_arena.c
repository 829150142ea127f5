/*
 * --shared-arena: one memory arena for all of a process's sessions on a provider, in place of one per session.
 *
 * Each ONNX Runtime session grows an arena of its own and never gives memory back, so a pipeline's peak is the sum of
 * every session's largest activations (text encoders, UNet, VAE), although they never run at the same time. An
 * allocator registered with the process's environment (CreateAndRegisterAllocator[V2]) is used instead by every
 * session created with the config entry session.use_env_allocators=1, so the pipeline's peak becomes its largest
 * session's.
 *
 * JS: shareArena(libonnxruntimePath, ep, deviceId, arena, providerOptions, logSeverity) -> "ONNX Runtime <version>";
 *     throws on error. A second call for the same memory keeps the first arena (its settings too).
 *     ep: "cuda" (device memory of deviceId, needs C API version 15) or "cpu".
 *     arena: "key\tvalue\n..." of OrtArenaCfg (arena_extend_strategy 0/1, max_mem, ...).
 *     providerOptions: the CUDA provider's options for the allocator (device_id is added here).
 *     logSeverity (0-3): the process's ONNX Runtime log level, for the environment (ort_process_env).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

#define TEXT_MAX 4096
#define MAX_ENTRIES 32
#define ORT_ARENA_ALLOCATOR 1
#define ORT_MEM_TYPE_DEFAULT 0
#define MAX_DEVICES 64

/* what this process registered already (an engine started again in the same process finds its arena there) */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static int cpu_registered;
static int cuda_registered[MAX_DEVICES];

/* "1.29.0" -> 29 (C API versions follow the minor release); 0 when unreadable */
static int minor_release(const char *version) {
  int major = 0, minor = 0;
  if (sscanf(version, "%d.%d", &major, &minor) != 2 || major != 1) return 0;
  return minor;
}

static int register_arena(int on_gpu, int device, char *arena, char *provider, int severity, char *msg, size_t len) {
  const char *keys[MAX_ENTRIES + 1], *values[MAX_ENTRIES + 1];
  void *env = NULL, *mem = NULL, *cfg = NULL;
  OrtStatus *st = ort_process_env(severity, &env);
  if (st) return ort_status_text(st, "CreateEnv", msg, len), -1;

  size_t n = ort_split_options(arena, keys, values, MAX_ENTRIES);
  size_t numbers[MAX_ENTRIES];
  for (size_t i = 0; i < n; i++) numbers[i] = (size_t)strtoull(values[i], NULL, 10);
  st = ORT_STATUS(CreateArenaCfgV2, const char *const *, const size_t *, size_t, void **)(keys, numbers, n, &cfg);
  if (st) return ort_status_text(st, "the arena options", msg, len), -1;

  if (on_gpu) {
    st = ORT_STATUS(CreateMemoryInfo, const char *, int, int, int, void **)("Cuda", ORT_ARENA_ALLOCATOR, device,
                                                                           ORT_MEM_TYPE_DEFAULT, &mem);
    if (!st) {
      size_t m = ort_split_options(provider, keys, values, MAX_ENTRIES);
      char device_text[16];
      snprintf(device_text, sizeof device_text, "%d", device);
      keys[m] = "device_id";
      values[m] = device_text;
      st = ORT_STATUS(CreateAndRegisterAllocatorV2, void *, const char *, const void *, const void *,
                      const char *const *, const char *const *, size_t)(env, "CUDAExecutionProvider", mem, cfg, keys,
                                                                        values, m + 1);
    }
  } else {
    st = ORT_STATUS(CreateCpuMemoryInfo, int, int, void **)(ORT_ARENA_ALLOCATOR, ORT_MEM_TYPE_DEFAULT, &mem);
    if (!st) st = ORT_STATUS(CreateAndRegisterAllocator, void *, const void *, const void *)(env, mem, cfg);
  }
  if (mem) ORT_FN(ReleaseMemoryInfo, void, void *)(mem);
  ORT_FN(ReleaseArenaCfg, void, void *)(cfg);
  if (st) return ort_status_text(st, "registering the shared arena", msg, len), -1;
  return 0;
}

napi_value js_share_arena(napi_env env, napi_callback_info info) {
  size_t argc = 6, len = 0;
  napi_value argv[6];
  char lib[4096], ep[16], arena[TEXT_MAX], provider[TEXT_MAX], msg[8192];
  int64_t device = 0, severity = 3;
  const char *version = "";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0 || argc < 6)
    return napi_fail(env, "shareArena(lib, ep, deviceId, arena, providerOptions, logSeverity) takes 6 arguments");
  if (napi_get_value_string_utf8(env, argv[0], lib, sizeof lib, &len) != 0 || len >= sizeof lib - 1 ||
      napi_get_value_string_utf8(env, argv[1], ep, sizeof ep, &len) != 0 ||
      napi_get_value_int64(env, argv[2], &device) != 0 ||
      napi_get_value_string_utf8(env, argv[3], arena, sizeof arena, &len) != 0 || len >= sizeof arena - 1 ||
      napi_get_value_string_utf8(env, argv[4], provider, sizeof provider, &len) != 0 || len >= sizeof provider - 1 ||
      napi_get_value_int64(env, argv[5], &severity) != 0 || severity < 0 || severity > 3)
    return napi_fail(env, "shareArena: bad arguments (or a text over 4095 bytes)");
  int on_gpu = strcmp(ep, "cuda") == 0;
  if (!on_gpu && strcmp(ep, "cpu") != 0) return napi_fail(env, "shareArena: ep must be 'cuda' or 'cpu'");
  if (ort_bind_library(lib, &version, msg, sizeof msg)) return napi_fail(env, msg);
  if (on_gpu && minor_release(version) < 15) {
    snprintf(msg, sizeof msg, "shareArena: a shared CUDA arena needs ONNX Runtime 1.15 or later (this is %s)", version);
    return napi_fail(env, msg);
  }
  if (on_gpu && (device < 0 || device >= MAX_DEVICES)) return napi_fail(env, "shareArena: deviceId out of range");
  pthread_mutex_lock(&registry_lock);
  int *registered = on_gpu ? &cuda_registered[device] : &cpu_registered;
  int failed = !*registered && register_arena(on_gpu, (int)device, arena, provider, (int)severity, msg, sizeof msg);
  if (!failed) *registered = 1;
  pthread_mutex_unlock(&registry_lock);
  if (failed) return napi_fail(env, msg);
  napi_value out;
  char text[64];
  snprintf(text, sizeof text, "ONNX Runtime %s", version);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &out);
  return out;
}
