/*
 * ort_cuda: a Node addon for what onnxruntime-node cannot do with ONNX Runtime's CUDA provider.
 *  - install / effective (provider_options.c): --cuda-options for onnxruntime-node's own CUDA sessions;
 *  - createSession / sessionIO / run / releaseSession (graph_session.c): sessions whose inputs and outputs stay bound
 *    at fixed GPU addresses, which is what the provider's CUDA graphs need (enable_cuda_graph);
 *  - shareArena (shared_arena.c): one memory arena for all sessions on a provider (--shared-arena).
 * Built by scripts/build-ort-cuda.sh; used by server/engine/runtime/cuda-options.ts, bound-session.ts and
 * shared-arena.ts.
 */
#include "addon.h"

#define EXPORT __attribute__((visibility("default")))

static void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  napi_set_named_property(env, exports, name, fn);
}

EXPORT napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  export_fn(env, exports, "install", js_install);
  export_fn(env, exports, "effective", js_effective);
  export_fn(env, exports, "createSession", js_create_session);
  export_fn(env, exports, "sessionIO", js_session_io);
  export_fn(env, exports, "run", js_run);
  export_fn(env, exports, "releaseSession", js_release_session);
  export_fn(env, exports, "shareArena", js_share_arena);
  return exports;
}
