/*
 * ort_cuda_options: a Node addon that gives ONNX Runtime's CUDA execution provider the options onnxruntime-node
 * does not pass.
 *
 * Why: onnxruntime-node's binding builds OrtCUDAProviderOptionsV2 with only device_id set, so the provider always
 * runs with its defaults: exhaustive cuDNN algorithm search, the largest cuDNN workspace, a memory arena that grows
 * by powers of two, TF32 on, NCHW convolutions. Those choices decide first-call time and GPU memory, and no session
 * option reaches them.
 *
 * How: ONNX Runtime's C API is one table of function pointers (OrtApi, returned by OrtGetApiBase()->GetApi), shared
 * by everything in the process that uses that libonnxruntime. install() finds the already-loaded libonnxruntime,
 * and swaps the table's SessionOptionsAppendExecutionProvider_CUDA_V2 slot for a wrapper that first applies the
 * options with UpdateCUDAProviderOptions (keeping the binding's device_id) and then calls the original. Sessions
 * created afterwards by the binding get them; nothing else in the table changes. The table only grows between
 * releases (new functions are appended), so the slot numbers below hold for every release since the API version
 * that added these functions.
 *
 * The N-API functions are declared here from Node's stable C ABI (no node headers needed to build).
 *
 * JS: install(libonnxruntimePath, "key\tvalue\n...") -> "ONNX Runtime <version>"; throws on error.
 *     effective() -> the provider's options as the last wrapped call left them (GetCUDAProviderOptionsAsString), or
 *     "" before any CUDA session was set up.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* glibc 2.34 moved dlopen & co. into libc under a new symbol version; binding the old one keeps the addon loadable on
   older systems (a machine with the CUDA provider may run an older distribution than the one that built this). */
#if defined(__x86_64__) && defined(__GLIBC__)
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver dlclose,dlclose@GLIBC_2.2.5");
__asm__(".symver dlerror,dlerror@GLIBC_2.2.5");
#endif

/* ---- Node-API (stable C ABI) ---- */
typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status; /* napi_ok == 0 */
typedef napi_value (*napi_callback)(napi_env, napi_callback_info);
extern napi_status napi_create_function(napi_env, const char *, size_t, napi_callback, void *, napi_value *);
extern napi_status napi_set_named_property(napi_env, napi_value, const char *, napi_value);
extern napi_status napi_get_cb_info(napi_env, napi_callback_info, size_t *, napi_value *, napi_value *, void **);
extern napi_status napi_get_value_string_utf8(napi_env, napi_value, char *, size_t, size_t *);
extern napi_status napi_create_string_utf8(napi_env, const char *, size_t, napi_value *);
extern napi_status napi_throw_error(napi_env, const char *, const char *);
#define NAPI_AUTO_LENGTH SIZE_MAX

/* ---- ONNX Runtime C API: the few slots used, by position in struct OrtApi ---- */
typedef struct OrtStatus OrtStatus;
typedef struct {
  const void *(*GetApi)(uint32_t version);
  const char *(*GetVersionString)(void);
} OrtApiBase;
typedef OrtStatus *(*CreateStatusFn)(int code, const char *msg);
typedef int (*GetErrorCodeFn)(const OrtStatus *);
typedef const char *(*GetErrorMessageFn)(const OrtStatus *);
typedef void (*ReleaseStatusFn)(OrtStatus *);
typedef OrtStatus *(*AppendCudaV2Fn)(void *session_options, const void *cuda_options);
typedef OrtStatus *(*UpdateCudaFn)(void *cuda_options, const char *const *keys, const char *const *values, size_t n);
typedef OrtStatus *(*CudaOptionsAsStringFn)(const void *cuda_options, void *allocator, char **out);
typedef OrtStatus *(*GetAllocatorWithDefaultOptionsFn)(void **out);
typedef OrtStatus *(*AllocatorFreeFn)(void *allocator, void *p);

enum {
  SLOT_CREATE_STATUS = 0,
  SLOT_GET_ERROR_CODE = 1,
  SLOT_GET_ERROR_MESSAGE = 2,
  SLOT_ALLOCATOR_FREE = 76,
  SLOT_GET_ALLOCATOR_WITH_DEFAULT_OPTIONS = 78,
  SLOT_RELEASE_STATUS = 93,
  SLOT_APPEND_CUDA_V2 = 204,
  SLOT_UPDATE_CUDA = 206,
  SLOT_CUDA_AS_STRING = 207,
};
/* the first API version whose table has every slot above */
#define MIN_API_VERSION 11u

#define MAX_OPTIONS 32
#define TEXT_MAX 4096

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void **api_table;             /* the live OrtApi table */
static AppendCudaV2Fn original_append; /* its CUDA_V2 slot before install */
static char option_text[TEXT_MAX];    /* "key\tvalue\n..." as installed */
static char effective_text[TEXT_MAX]; /* GetCUDAProviderOptionsAsString after the last wrapped call */

static OrtStatus *fail(int code, const char *what, const OrtStatus *cause) {
  char msg[TEXT_MAX + 256];
  const char *detail = cause ? ((GetErrorMessageFn)api_table[SLOT_GET_ERROR_MESSAGE])(cause) : "";
  snprintf(msg, sizeof msg, "tcd-studio CUDA provider options (%s): %s", what, detail);
  return ((CreateStatusFn)api_table[SLOT_CREATE_STATUS])(code, msg);
}

/* Splits a copy of option_text into keys/values; returns the count. */
static size_t split_options(char *text, const char **keys, const char **values) {
  size_t n = 0;
  for (char *line = strtok(text, "\n"); line && n < MAX_OPTIONS; line = strtok(NULL, "\n")) {
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
  OrtStatus *st = ((GetAllocatorWithDefaultOptionsFn)api_table[SLOT_GET_ALLOCATOR_WITH_DEFAULT_OPTIONS])(&allocator);
  if (st) {
    ((ReleaseStatusFn)api_table[SLOT_RELEASE_STATUS])(st);
    return;
  }
  st = ((CudaOptionsAsStringFn)api_table[SLOT_CUDA_AS_STRING])(cuda_options, allocator, &text);
  if (st) {
    ((ReleaseStatusFn)api_table[SLOT_RELEASE_STATUS])(st);
    return;
  }
  snprintf(effective_text, sizeof effective_text, "%s", text);
  ((AllocatorFreeFn)api_table[SLOT_ALLOCATOR_FREE])(allocator, text);
}

/* The CUDA_V2 slot after install: options first (device_id kept from the binding), then the original. */
static OrtStatus *append_cuda_v2_with_options(void *session_options, const void *cuda_options) {
  char text[TEXT_MAX];
  const char *keys[MAX_OPTIONS + 1], *values[MAX_OPTIONS + 1];
  pthread_mutex_lock(&lock);
  memcpy(text, option_text, sizeof text);
  AppendCudaV2Fn original = original_append;
  pthread_mutex_unlock(&lock);

  size_t n = split_options(text, keys, values);
  if (n > 0) {
    /* UpdateCUDAProviderOptions rebuilds every field from its defaults plus the keys given: restate device_id,
       which OrtCUDAProviderOptionsV2 keeps as its first member. */
    char device[16];
    snprintf(device, sizeof device, "%d", *(const int *)cuda_options);
    keys[n] = "device_id";
    values[n] = device;
    OrtStatus *st = ((UpdateCudaFn)api_table[SLOT_UPDATE_CUDA])((void *)cuda_options, keys, values, n + 1);
    if (st) {
      OrtStatus *wrapped = fail(((GetErrorCodeFn)api_table[SLOT_GET_ERROR_CODE])(st), "applying them", st);
      ((ReleaseStatusFn)api_table[SLOT_RELEASE_STATUS])(st);
      return wrapped;
    }
    pthread_mutex_lock(&lock);
    record_effective(cuda_options);
    pthread_mutex_unlock(&lock);
  }
  return original(session_options, cuda_options);
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

static napi_value throw_error(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value js_install(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char path[4096], options[TEXT_MAX], msg[8192];
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0 || argc < 2)
    return throw_error(env, "install(libonnxruntimePath, options) takes two strings");
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != 0 || len >= sizeof path - 1)
    return throw_error(env, "install: libonnxruntimePath must be a string shorter than 4096 bytes");
  if (napi_get_value_string_utf8(env, argv[1], options, sizeof options, &len) != 0 || len >= sizeof options - 1)
    return throw_error(env, "install: options must be a string shorter than 4096 bytes");

  /* RTLD_NOLOAD: only the copy onnxruntime-node already loaded counts (another copy would have its own table). */
  void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (!lib) {
    const char *why = dlerror(); /* NULL when the file exists but is simply not loaded */
    snprintf(msg, sizeof msg, "install: %s is not loaded in this process (import onnxruntime-node first)%s%s", path,
             why ? ": " : "", why ? why : "");
    return throw_error(env, msg);
  }
  const OrtApiBase *(*get_base)(void) = (const OrtApiBase *(*)(void))dlsym(lib, "OrtGetApiBase");
  dlclose(lib); /* the binding keeps it loaded */
  if (!get_base) return throw_error(env, "install: the library has no OrtGetApiBase");
  const OrtApiBase *base = get_base();
  void **table = (void **)base->GetApi(MIN_API_VERSION);
  if (!table) return throw_error(env, "install: this ONNX Runtime does not offer C API version 11 (CUDA_V2 options)");

  pthread_mutex_lock(&lock);
  if (api_table && api_table != table) {
    pthread_mutex_unlock(&lock);
    return throw_error(env, "install: already installed on a different libonnxruntime in this process");
  }
  snprintf(option_text, sizeof option_text, "%s", options);
  int failed = 0;
  if (!api_table) {
    api_table = table;
    original_append = (AppendCudaV2Fn)table[SLOT_APPEND_CUDA_V2];
    failed = patch_slot(&table[SLOT_APPEND_CUDA_V2], (void *)append_cuda_v2_with_options);
    if (failed) api_table = NULL;
  }
  pthread_mutex_unlock(&lock);
  if (failed) return throw_error(env, "install: could not make the OrtApi table writable (mprotect)");

  napi_value out;
  snprintf(msg, sizeof msg, "ONNX Runtime %s", base->GetVersionString());
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &out);
  return out;
}

static napi_value js_effective(napi_env env, napi_callback_info info) {
  (void)info;
  char text[TEXT_MAX];
  pthread_mutex_lock(&lock);
  memcpy(text, effective_text, sizeof text);
  pthread_mutex_unlock(&lock);
  napi_value out;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &out);
  return out;
}

EXPORT napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "install", NAPI_AUTO_LENGTH, js_install, NULL, &fn);
  napi_set_named_property(env, exports, "install", fn);
  napi_create_function(env, "effective", NAPI_AUTO_LENGTH, js_effective, NULL, &fn);
  napi_set_named_property(env, exports, "effective", fn);
  return exports;
}
