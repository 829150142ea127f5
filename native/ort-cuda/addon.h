/* Shared declarations of the ort_cuda addon (provider_options.c, graph_session.c, addon.c). */
#pragma once
#include "napi_abi.h"
#include "ort_api.h"

/* glibc 2.34 moved dlopen & co. into libc under a new symbol version; binding the old one keeps the addon loadable on
   older systems (a machine with the CUDA provider may run an older distribution than the one that built this). */
#if defined(__x86_64__) && defined(__GLIBC__)
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver dlclose,dlclose@GLIBC_2.2.5");
__asm__(".symver dlerror,dlerror@GLIBC_2.2.5");
#endif


/* provider_options.c */
napi_value js_install(napi_env env, napi_callback_info info);
napi_value js_effective(napi_env env, napi_callback_info info);
/* Sets ort_api from a loaded libonnxruntime (once per process); returns an error text (in buf) or NULL. */
const char *ort_bind_library(const char *path, const char **version, char *buf, size_t len);
/* Splits "key\tvalue\n..." in place into at most max keys/values; returns the count. */
size_t ort_split_options(char *text, const char **keys, const char **values, size_t max);

/* shared_arena.c */
napi_value js_share_arena(napi_env env, napi_callback_info info);

/* graph_session.c */
napi_value js_create_session(napi_env env, napi_callback_info info);
napi_value js_session_io(napi_env env, napi_callback_info info);
napi_value js_run(napi_env env, napi_callback_info info);
napi_value js_release_session(napi_env env, napi_callback_info info);
/* The process's OrtEnv, taken once (made at `severity` when no session holds one): bound sessions, the shared arena. */
OrtStatus *ort_process_env(int severity, void **env);
