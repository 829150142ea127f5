/*
 * --cuda-options: ONNX Runtime CUDA provider options that onnxruntime-node does not pass.
 *
 * onnxruntime-node's binding builds OrtCUDAProviderOptionsV2 with only device_id set, so its CUDA sessions always run
 * with the provider's defaults (exhaustive cuDNN algorithm search, the largest cuDNN workspace, a memory arena that
 * grows by powers of two, TF32 on, NCHW convolutions). install() swaps the table's
 * SessionOptionsAppendExecutionProvider_CUDA_V2 slot for a wrapper that first applies the options with
 * UpdateCUDAProviderOptions (keeping the binding's device_id) and then calls the original; sessions created afterwards
 * get them, nothing else in the table changes. The table is shared by everything in the process that uses that
 * libonnxruntime, so onnxruntime-node's own calls go through the wrapper.
 *
 * JS: install(libonnxruntimePath, "key\tvalue\n...") -> "ONNX Runtime <version>"; throws on error.
 *     effective() -> the provider's options as the last wrapped call left them (GetCUDAProviderOptionsAsString), or
 *     "" before any CUDA session was set up.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "addon.h"

#define MAX_OPTIONS 32
#define TEXT_MAX 4096

void **ort_api;
void *ort_original_append_cuda_v2;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int wrapped;                   /* the CUDA_V2 slot holds append_cuda_v2_with_options */
static char option_text[TEXT_MAX];    /* "key\tvalue\n..." as installed */
static char effective_text[TEXT_MAX]; /* GetCUDAProviderOptionsAsString after the last wrapped call */

void **ort_table_of(const char *path, const char **why, const char **version) {
  /* RTLD_NOLOAD: only the copy onnxruntime-node already loaded counts (another copy would have its own table) */
  void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (!lib) {
    *why = "is not loaded in this process (import onnxruntime-node first)";
    return NULL;
  }
  const OrtApiBase *(*get_base)(void) = (const OrtApiBase *(*)(void))dlsym(lib, "OrtGetApiBase");
  dlclose(lib); /* the binding keeps it loaded */
  if (!get_base) {
    *why = "has no OrtGetApiBase";
    return NULL;
  }
  const OrtApiBase *base = get_base();
  void **table = (void **)base->GetApi(ORT_MIN_API_VERSION);
  if (!table) {
    *why = "does not offer C API version 11";
    return NULL;
  }
  *version = base->GetVersionString();
  return table;
}

const char *ort_status_text(OrtStatus *st, const char *what, char *buf, size_t len) {
  snprintf(buf, len, "%s: %s", what, ORT_FN(GetErrorMessage, const char *, const OrtStatus *)(st));
  ORT_FN(ReleaseStatus, void, OrtStatus *)(st);
  return buf;
}

size_t ort_split_options(char *text, const char **keys, const char **values, size_t max) {
  size_t n = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save)) {
    char *tab = strchr(line, '\t');
    if (!tab) continue;
    *tab = '\0';
    keys[n] = line;
    values[n] = tab + 1;
    n++;
  }
  return n;
}

static void record_effective(const void *cuda_options) {
  void *allocator = NULL;
  char *text = NULL;
  OrtStatus *st = ORT_STATUS(GetAllocatorWithDefaultOptions, void **)(&allocator);
  if (!st) st = ORT_STATUS(GetCUDAProviderOptionsAsString, const void *, void *, char **)(cuda_options, allocator, &text);
  if (st) {
    ORT_FN(ReleaseStatus, void, OrtStatus *)(st);
    return;
  }
  snprintf(effective_text, sizeof effective_text, "%s", text);
  st = ORT_STATUS(AllocatorFree, void *, void *)(allocator, text);
  if (st) ORT_FN(ReleaseStatus, void, OrtStatus *)(st);
}

/* The CUDA_V2 slot after install: options first (device_id kept from the binding), then the original. */
static OrtStatus *append_cuda_v2_with_options(void *session_options, const void *cuda_options) {
  char text[TEXT_MAX];
  const char *keys[MAX_OPTIONS + 1], *values[MAX_OPTIONS + 1];
  pthread_mutex_lock(&lock);
  memcpy(text, option_text, sizeof text);
  pthread_mutex_unlock(&lock);

  size_t n = ort_split_options(text, keys, values, MAX_OPTIONS);
  if (n > 0) {
    /* UpdateCUDAProviderOptions rebuilds every field from its defaults plus the keys given: restate device_id,
       which OrtCUDAProviderOptionsV2 keeps as its first member. */
    char device[16];
    snprintf(device, sizeof device, "%d", *(const int *)cuda_options);
    keys[n] = "device_id";
    values[n] = device;
    OrtStatus *st = ORT_STATUS(UpdateCUDAProviderOptions, void *, const char *const *, const char *const *, size_t)(
        (void *)cuda_options, keys, values, n + 1);
    if (st) {
      char msg[TEXT_MAX + 256];
      int code = ORT_FN(GetErrorCode, int, const OrtStatus *)(st);
      ort_status_text(st, "tcd-studio CUDA provider options (applying them)", msg, sizeof msg);
      return ORT_FN(CreateStatus, OrtStatus *, int, const char *)(code, msg);
    }
    pthread_mutex_lock(&lock);
    record_effective(cuda_options);
    pthread_mutex_unlock(&lock);
  }
  return ((OrtStatus * (*)(void *, const void *)) ort_original_append_cuda_v2)(session_options, cuda_options);
}

/* Makes the page(s) holding one table slot writable, stores fn, and restores read-only. */
static int patch_slot(void **slot, void *fn) {
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t start = (uintptr_t)slot & ~(uintptr_t)(page - 1);
  size_t len = ((uintptr_t)(slot + 1) - start + page - 1) & ~(uintptr_t)(page - 1);
  if (mprotect((void *)start, len, PROT_READ | PROT_WRITE) != 0) return -1;
  *slot = fn;
  mprotect((void *)start, len, PROT_READ);
  return 0;
}

/* Sets ort_api from a loaded libonnxruntime (once per process); returns an error text or NULL. */
const char *ort_bind_library(const char *path, const char **version, char *buf, size_t len) {
  const char *why = NULL;
  void **table = ort_table_of(path, &why, version);
  if (!table) {
    snprintf(buf, len, "%s %s", path, why);
    return buf;
  }
  pthread_mutex_lock(&lock);
  if (ort_api && ort_api != table) {
    pthread_mutex_unlock(&lock);
    snprintf(buf, len, "%s: another libonnxruntime is already in use in this process", path);
    return buf;
  }
  if (!ort_api) {
    ort_api = table;
    ort_original_append_cuda_v2 = table[SLOT_SessionOptionsAppendExecutionProvider_CUDA_V2];
  }
  pthread_mutex_unlock(&lock);
  return NULL;
}

napi_value js_install(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char path[4096], options[TEXT_MAX], msg[8192];
  size_t len = 0;
  const char *version = "";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0 || argc < 2)
    return napi_fail(env, "install(libonnxruntimePath, options) takes two strings");
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != 0 || len >= sizeof path - 1)
    return napi_fail(env, "install: libonnxruntimePath must be a string shorter than 4096 bytes");
  if (napi_get_value_string_utf8(env, argv[1], options, sizeof options, &len) != 0 || len >= sizeof options - 1)
    return napi_fail(env, "install: options must be a string shorter than 4096 bytes");
  const char *err = ort_bind_library(path, &version, msg, sizeof msg);
  if (err) {
    char full[8300];
    snprintf(full, sizeof full, "install: %s", err);
    return napi_fail(env, full);
  }
  pthread_mutex_lock(&lock);
  snprintf(option_text, sizeof option_text, "%s", options);
  int failed = 0;
  if (!wrapped) {
    failed = patch_slot(&ort_api[SLOT_SessionOptionsAppendExecutionProvider_CUDA_V2],
                        (void *)append_cuda_v2_with_options);
    wrapped = !failed;
  }
  pthread_mutex_unlock(&lock);
  if (failed) return napi_fail(env, "install: could not make the OrtApi table writable (mprotect)");

  napi_value out;
  snprintf(msg, sizeof msg, "ONNX Runtime %s", version);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &out);
  return out;
}

napi_value js_effective(napi_env env, napi_callback_info info) {
  (void)info;
  char text[TEXT_MAX];
  pthread_mutex_lock(&lock);
  memcpy(text, effective_text, sizeof text);
  pthread_mutex_unlock(&lock);
  napi_value out;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &out);
  return out;
}
