/*
 * Sessions with fixed device bindings, for the CUDA provider's CUDA graphs.
 *
 * A CUDA graph replays the kernels of one captured run with the GPU addresses they had, so every input and output
 * must live at a fixed device address that the caller refills: ONNX Runtime's IoBinding with tensors the caller
 * allocated on the device. onnxruntime-node binds only WebGPU buffers, so these sessions are created and run here,
 * through the C API table of the libonnxruntime onnxruntime-node loaded (same process, same ORT environment).
 *
 * Per distinct set of input shapes ("signature") a session keeps one IoBinding with its own device tensors. Its first
 * run lets ONNX Runtime allocate the outputs, which tells their shapes; fixed output tensors are bound from then on.
 * With cudaGraph, each signature also gets its own graph id (run option gpu_graph_id), so ONNX Runtime captures one
 * graph per signature (after a warm-up run) and replays it afterwards. A run copies the host inputs
 * into the signature's device tensors, runs, and copies the outputs back: on a CPU session the very same path runs
 * with host memory and memcpy (the tests' twin of the CUDA path).
 *
 * JS:
 *   createSession(libonnxruntimePath, model: string | Uint8Array, ep: 'cuda' | 'cpu', deviceId, options, cudaGraph,
 *                 logId, logSeverity?) -> handle; options: "key\tvalue\n..." CUDA provider options (ignored on the
 *                 CPU); logSeverity: ONNX Runtime's log level in use (0 verbose ... 3 errors only, the default)
 *   sessionIO(handle) -> { inputs: string[], outputs: string[] }
 *   run(handle, inNames, inTypes, inDims, inData: TypedArray[]) -> [{ name, type, dims, data: ArrayBuffer }], every
 *       output in the session's order; types are ONNX element types (1 float, 10 float16, 7 int64, 6 int32, ...)
 *   releaseSession(handle)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

#define MAX_IO 512
#define MAX_RANK 8
#define MAX_GRAPHS 16   /* captured graphs per session; further signatures run without one */
#define MAX_BINDINGS 32 /* bindings kept per session (least recently used freed) */
#define MSG 4096

typedef struct Binding {
  char *signature;
  void *io;                /* OrtIoBinding* */
  void *run_options;       /* OrtRunOptions* (gpu_graph_id) */
  void *first_run_options; /* the first run's (gpu_graph_id -1: never a capture), with CUDA graphs */
  int graph_id;            /* -1: runs without a graph */
  long runs;               /* completed runs (ONNX Runtime captures on a graph id's second run) */
  int learned;             /* output types and shapes known, fixed output tensors bound */
  size_t n_in, n_out;
  void **values; /* n_in input then n_out output OrtValue* on the session's device */
  void **data;   /* their device pointers */
  size_t *bytes;
  int *out_types;
  size_t *out_rank;
  int64_t (*out_dims)[MAX_RANK];
  struct Binding *next;
} Binding;

typedef struct {
  void *session;   /* OrtSession* */
  void *memory;    /* OrtMemoryInfo* of the device the bindings live on */
  void *allocator; /* OrtAllocator* of the session for that memory */
  int on_gpu, device, cuda_graph, next_graph_id;
  size_t n_inputs, n_outputs;
  char **input_names, **output_names;
  Binding *bindings;
} GraphSession;

static void *ort_env; /* the process's OrtEnv (ort_process_env) */

/* ---- CUDA runtime, loaded by the CUDA provider already; resolved on first use ---- */
typedef int (*CudaMemcpyFn)(void *dst, const void *src, size_t n, int kind);
typedef int (*CudaIntFn)(int);
typedef int (*CudaVoidFn)(void);
typedef const char *(*CudaErrorStringFn)(int);
static CudaMemcpyFn cuda_memcpy;
static CudaIntFn cuda_set_device;
static CudaVoidFn cuda_synchronize;
static CudaErrorStringFn cuda_error_string;

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER; /* ort_env and the CUDA runtime, set once */

/* The process's OrtEnv, taken once for the process's life (bound sessions and the shared arena need it as long as
   the process runs). When no session holds one now, CreateEnv makes it at `severity` for every later session, so
   the level given must be the one in use. */
OrtStatus *ort_process_env(int severity, void **out) {
  pthread_mutex_lock(&init_lock);
  OrtStatus *st = ort_env ? NULL : ORT_STATUS(CreateEnv, int, const char *, void **)(severity, "tcd-studio", &ort_env);
  *out = ort_env;
  pthread_mutex_unlock(&init_lock);
  return st;
}

/* The CUDA runtime the CUDA provider uses: called after a CUDA session exists, so the provider has loaded its own
   libcudart; any version already in the process wins over loading one from disk. Call with init_lock held. */
static const char *load_cudart(void) {
  if (cuda_memcpy) return NULL;
  static const char *names[] = {"libcudart.so.13", "libcudart.so.12", "libcudart.so"};
  const size_t n = sizeof names / sizeof *names;
  void *lib = NULL;
  for (size_t i = 0; i < n && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
  for (size_t i = 0; i < n && !lib; i++) lib = dlopen(names[i], RTLD_NOW);
  if (!lib) return "the CUDA runtime (libcudart.so.13) cannot be loaded";
  CudaIntFn set_device = (CudaIntFn)dlsym(lib, "cudaSetDevice");
  CudaVoidFn synchronize = (CudaVoidFn)dlsym(lib, "cudaDeviceSynchronize");
  CudaErrorStringFn error_string = (CudaErrorStringFn)dlsym(lib, "cudaGetErrorString");
  CudaMemcpyFn memcpy_fn = (CudaMemcpyFn)dlsym(lib, "cudaMemcpy");
  if (!memcpy_fn || !set_device || !synchronize || !error_string)
    return "the CUDA runtime lacks cudaMemcpy / cudaSetDevice / cudaDeviceSynchronize";
  cuda_set_device = set_device;
  cuda_synchronize = synchronize;
  cuda_error_string = error_string;
  cuda_memcpy = memcpy_fn; /* last: it marks the others as set */
  return NULL;
}

/* host <-> session memory; kind 1 = host to device, 2 = device to host (cudaMemcpyKind) */
static const char *copy_bytes(GraphSession *s, void *dst, const void *src, size_t n, int kind, char *msg) {
  if (!s->on_gpu) {
    memcpy(dst, src, n);
    return NULL;
  }
  int rc = cuda_set_device(s->device);
  if (!rc) rc = cuda_memcpy(dst, src, n, kind);
  if (!rc) return NULL;
  snprintf(msg, MSG, "cudaMemcpy: %s", cuda_error_string(rc));
  return msg;
}

/* A pageable host-to-device cudaMemcpy may return before the copy lands, and ONNX Runtime's streams do not wait for
   the legacy default stream: one wait after a run's input copies (microseconds). */
static const char *inputs_landed(GraphSession *s, char *msg) {
  if (!s->on_gpu) return NULL;
  int rc = cuda_synchronize();
  if (!rc) return NULL;
  snprintf(msg, MSG, "cudaDeviceSynchronize: %s", cuda_error_string(rc));
  return msg;
}

static size_t element_size(int type) {
  switch (type) {
    case ORT_FLOAT:
    case ORT_INT32:
      return 4;
    case ORT_FLOAT16:
      return 2;
    case ORT_INT64:
      return 8;
    case ORT_UINT8:
    case ORT_INT8:
    case ORT_BOOL:
      return 1;
    default:
      return 0;
  }
}

/* Whether a JS typed array kind holds an ONNX element type (float16 travels as 16-bit integers). */
static int kind_fits(napi_typedarray_type kind, int type) {
  switch (type) {
    case ORT_FLOAT:
      return kind == napi_float32_array;
    case ORT_FLOAT16:
      return kind == napi_uint16_array || kind == napi_int16_array;
    case ORT_INT64:
      return kind == napi_bigint64_array;
    case ORT_INT32:
      return kind == napi_int32_array;
    case ORT_INT8:
      return kind == napi_int8_array;
    case ORT_UINT8:
    case ORT_BOOL:
      return kind == napi_uint8_array || kind == napi_uint8_clamped_array;
    default:
      return 0;
  }
}

#define CHECK(call, what)                                                  \
  do {                                                                     \
    OrtStatus *st_ = (call);                                               \
    if (st_) return napi_fail(env, ort_status_text(st_, what, msg, MSG)); \
  } while (0)

static char *copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *out = malloc(n);
  if (out) memcpy(out, s, n);
  return out;
}

static const char *read_names(GraphSession *s, int outputs, char *msg) {
  void *alloc = NULL;
  size_t n = 0;
  OrtStatus *st = ORT_STATUS(GetAllocatorWithDefaultOptions, void **)(&alloc);
  if (!st) {
    st = outputs ? ORT_STATUS(SessionGetOutputCount, const void *, size_t *)(s->session, &n)
                 : ORT_STATUS(SessionGetInputCount, const void *, size_t *)(s->session, &n);
  }
  if (st) return ort_status_text(st, "reading the session's inputs and outputs", msg, MSG);
  char **names = calloc(n ? n : 1, sizeof *names);
  if (!names) return "out of memory";
  for (size_t i = 0; i < n; i++) {
    char *name = NULL;
    st = outputs ? ORT_STATUS(SessionGetOutputName, const void *, size_t, void *, char **)(s->session, i, alloc, &name)
                 : ORT_STATUS(SessionGetInputName, const void *, size_t, void *, char **)(s->session, i, alloc, &name);
    if (st) {
      for (size_t k = 0; k < i; k++) free(names[k]);
      free(names);
      return ort_status_text(st, "reading an input or output name", msg, MSG);
    }
    names[i] = copy_string(name);
    OrtStatus *freed = ORT_STATUS(AllocatorFree, void *, void *)(alloc, name);
    if (freed) ORT_FN(ReleaseStatus, void, OrtStatus *)(freed);
  }
  if (outputs) {
    s->output_names = names;
    s->n_outputs = n;
  } else {
    s->input_names = names;
    s->n_inputs = n;
  }
  return NULL;
}

static void free_binding(Binding *b) {
  size_t n = b->n_in + b->n_out;
  for (size_t i = 0; i < n; i++)
    if (b->values && b->values[i]) ORT_FN(ReleaseValue, void, void *)(b->values[i]);
  if (b->io) ORT_FN(ReleaseIoBinding, void, void *)(b->io);
  if (b->run_options) ORT_FN(ReleaseRunOptions, void, void *)(b->run_options);
  if (b->first_run_options) ORT_FN(ReleaseRunOptions, void, void *)(b->first_run_options);
  free(b->out_types);
  free(b->out_rank);
  free(b->out_dims);
  free(b->values);
  free(b->data);
  free(b->bytes);
  free(b->signature);
  free(b);
}

static void free_session(GraphSession *s) {
  for (Binding *b = s->bindings, *next; b; b = next) {
    next = b->next;
    free_binding(b);
  }
  if (s->allocator) ORT_FN(ReleaseAllocator, void, void *)(s->allocator);
  if (s->memory) ORT_FN(ReleaseMemoryInfo, void, void *)(s->memory);
  if (s->session) ORT_FN(ReleaseSession, void, void *)(s->session);
  for (size_t i = 0; i < s->n_inputs; i++) free(s->input_names[i]);
  for (size_t i = 0; i < s->n_outputs; i++) free(s->output_names[i]);
  free(s->input_names);
  free(s->output_names);
  free(s);
}

/* Session options with the CUDA provider (its options from "key\tvalue\n" text, plus device and graph flag). */
static OrtStatus *append_cuda(void *so, int device, int cuda_graph, char *options) {
  const char *keys[40], *values[40];
  size_t n = ort_split_options(options, keys, values, 36);
  char dev[16];
  snprintf(dev, sizeof dev, "%d", device);
  keys[n] = "device_id";
  values[n++] = dev;
  keys[n] = "enable_cuda_graph";
  values[n++] = cuda_graph ? "1" : "0";
  void *cuda = NULL;
  OrtStatus *st = ORT_STATUS(CreateCUDAProviderOptions, void **)(&cuda);
  if (st) return st;
  st = ORT_STATUS(UpdateCUDAProviderOptions, void *, const char *const *, const char *const *, size_t)(cuda, keys,
                                                                                                      values, n);
  /* the original append: provider_options.c's wrapper would rebuild the options from --cuda-options alone */
  if (!st) st = ((OrtStatus * (*)(void *, const void *)) ort_original_append_cuda_v2)(so, cuda);
  ORT_FN(ReleaseCUDAProviderOptions, void, void *)(cuda);
  return st;
}

/* What a JS handle points at: outlives the session, so a released handle reads as dead instead of freed memory. */
typedef struct {
  GraphSession *s;
} Handle;

static void finalize_handle(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  Handle *h = data;
  if (h->s) free_session(h->s); /* runs are synchronous on the JS thread, so none is in flight here */
  free(h);
}

napi_value js_create_session(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  char msg[MSG], lib[4096], ep[16], log_id[256], options[4096];
  size_t len = 0;
  int64_t device = 0, severity = 3;
  bool cuda_graph = false, is_array = false;
  const char *version = "";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0 || argc < 7)
    return napi_fail(env, "createSession(lib, model, ep, deviceId, options, cudaGraph, logId[, logSeverity]) takes "
                          "7 or 8 arguments");
  if (napi_get_value_string_utf8(env, argv[0], lib, sizeof lib, &len) != 0 || len >= sizeof lib - 1 ||
      napi_get_value_string_utf8(env, argv[2], ep, sizeof ep, &len) != 0 ||
      napi_get_value_int64(env, argv[3], &device) != 0 ||
      napi_get_value_string_utf8(env, argv[4], options, sizeof options, &len) != 0 || len >= sizeof options - 1 ||
      napi_get_value_bool(env, argv[5], &cuda_graph) != 0 ||
      napi_get_value_string_utf8(env, argv[6], log_id, sizeof log_id, &len) != 0)
    return napi_fail(env, "createSession: bad arguments (or a library path over 4095 bytes)");
  /* the process's ONNX Runtime log level (0-3; errors only when not given), for ort_process_env */
  if (argc >= 8 && (napi_get_value_int64(env, argv[7], &severity) != 0 || severity < 0 || severity > 3))
    return napi_fail(env, "createSession: logSeverity must be 0, 1, 2 or 3");
  int on_gpu = strcmp(ep, "cuda") == 0;
  if (!on_gpu && strcmp(ep, "cpu") != 0) return napi_fail(env, "createSession: ep must be 'cuda' or 'cpu'");
  if (ort_bind_library(lib, &version, msg, sizeof msg)) return napi_fail(env, msg);
  void *process_env = NULL;
  OrtStatus *env_status = ort_process_env((int)severity, &process_env);
  if (env_status) return napi_fail(env, ort_status_text(env_status, "CreateEnv", msg, MSG));

  void *so = NULL;
  CHECK(ORT_STATUS(CreateSessionOptions, void **)(&so), "CreateSessionOptions");
  OrtStatus *st = ORT_STATUS(SetSessionGraphOptimizationLevel, void *, int)(so, 99);
  if (!st) st = ORT_STATUS(SetSessionLogSeverityLevel, void *, int)(so, (int)severity);
  if (!st) st = ORT_STATUS(SetSessionLogId, void *, const char *)(so, log_id);
  if (!st && on_gpu) st = append_cuda(so, (int)device, cuda_graph, options);

  GraphSession *s = calloc(1, sizeof *s);
  if (!s) {
    ORT_FN(ReleaseSessionOptions, void, void *)(so);
    return napi_fail(env, "createSession: out of memory");
  }
  s->on_gpu = on_gpu;
  s->device = (int)device;
  s->cuda_graph = on_gpu && cuda_graph;
  if (!st) {
    napi_is_typedarray(env, argv[1], &is_array);
    if (is_array) {
      napi_typedarray_type type;
      size_t length = 0, offset = 0;
      void *data = NULL;
      napi_value buffer;
      napi_get_typedarray_info(env, argv[1], &type, &length, &data, &buffer, &offset);
      if (type != napi_uint8_array) {
        ORT_FN(ReleaseSessionOptions, void, void *)(so);
        free_session(s);
        return napi_fail(env, "createSession: model bytes must be a Uint8Array");
      }
      st = ORT_STATUS(CreateSessionFromArray, const void *, const void *, size_t, const void *, void **)(
          process_env, data, length, so, &s->session);
    } else {
      char path[4096];
      if (napi_get_value_string_utf8(env, argv[1], path, sizeof path, &len) != 0) {
        ORT_FN(ReleaseSessionOptions, void, void *)(so);
        free_session(s);
        return napi_fail(env, "createSession: model must be a path or a Uint8Array");
      }
      st = ORT_STATUS(CreateSession, const void *, const char *, const void *, void **)(process_env, path, so,
                                                                                        &s->session);
    }
  }
  ORT_FN(ReleaseSessionOptions, void, void *)(so);
  if (!st) {
    st = on_gpu ? ORT_STATUS(CreateMemoryInfo, const char *, int, int, int, void **)("Cuda", 1, (int)device, 0,
                                                                                     &s->memory)
                : ORT_STATUS(CreateCpuMemoryInfo, int, int, void **)(1, 0, &s->memory);
  }
  if (!st) st = ORT_STATUS(CreateAllocator, const void *, const void *, void **)(s->session, s->memory, &s->allocator);
  if (st) {
    free_session(s);
    return napi_fail(env, ort_status_text(st, "creating the session", msg, MSG));
  }
  const char *why = read_names(s, 0, msg);
  if (!why) why = read_names(s, 1, msg);
  if (!why && on_gpu) {
    pthread_mutex_lock(&init_lock);
    why = load_cudart();
    pthread_mutex_unlock(&init_lock);
  }
  if (why) {
    free_session(s);
    return napi_fail(env, why);
  }
  napi_value handle;
  Handle *h = malloc(sizeof *h);
  if (!h) {
    free_session(s);
    return napi_fail(env, "createSession: out of memory");
  }
  h->s = s;
  napi_create_external(env, h, finalize_handle, NULL, &handle);
  return handle;
}

static Handle *handle_of(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != 0) return NULL;
  return p;
}

static GraphSession *session_of(napi_env env, napi_value v) {
  Handle *h = handle_of(env, v);
  return h ? h->s : NULL;
}

static napi_value string_array(napi_env env, char **names, size_t n) {
  napi_value arr, str;
  napi_create_array_with_length(env, n, &arr);
  for (size_t i = 0; i < n; i++) {
    napi_create_string_utf8(env, names[i], NAPI_AUTO_LENGTH, &str);
    napi_set_element(env, arr, (uint32_t)i, str);
  }
  return arr;
}

napi_value js_session_io(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  GraphSession *s = argc ? session_of(env, argv[0]) : NULL;
  if (!s) return napi_fail(env, "sessionIO: not a live session handle");
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "inputs", string_array(env, s->input_names, s->n_inputs));
  napi_set_named_property(env, out, "outputs", string_array(env, s->output_names, s->n_outputs));
  return out;
}

napi_value js_release_session(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], undef;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  Handle *h = argc ? handle_of(env, argv[0]) : NULL;
  if (h && h->s) {
    free_session(h->s);
    h->s = NULL;
  }
  napi_get_undefined(env, &undef);
  return undef;
}

/* One input tensor spec from the run arguments (names[i], types[i], dims[i]). */
typedef struct {
  char name[256];
  int type;
  int64_t dims[MAX_RANK];
  size_t rank, bytes;
} Spec;

static const char *read_specs(napi_env env, napi_value names, napi_value types, napi_value dims, Spec *out,
                              uint32_t *count, char *msg) {
  uint32_t n = 0, n2 = 0, n3 = 0;
  if (napi_get_array_length(env, names, &n) || napi_get_array_length(env, types, &n2) ||
      napi_get_array_length(env, dims, &n3) || n != n2 || n != n3)
    return "run: names, types and dims must be arrays of one length";
  if (n > MAX_IO) return "run: more than 512 inputs";
  for (uint32_t i = 0; i < n; i++) {
    napi_value v, d;
    size_t len = 0;
    int64_t t = 0;
    uint32_t rank = 0;
    napi_get_element(env, names, i, &v);
    if (napi_get_value_string_utf8(env, v, out[i].name, sizeof out[i].name, &len) || len >= sizeof out[i].name - 1)
      return "run: a name is not text, or longer than 254 bytes";
    napi_get_element(env, types, i, &v);
    if (napi_get_value_int64(env, v, &t)) return "run: a type is not a number";
    out[i].type = (int)t;
    size_t size = element_size(out[i].type);
    if (!size) {
      snprintf(msg, MSG, "run: %s has element type %d, which this addon does not copy", out[i].name, (int)t);
      return msg;
    }
    napi_get_element(env, dims, i, &d);
    if (napi_get_array_length(env, d, &rank) || rank > MAX_RANK) return "run: dims must be arrays of at most 8";
    out[i].rank = rank;
    size_t elements = 1;
    for (uint32_t k = 0; k < rank; k++) {
      napi_get_element(env, d, k, &v);
      if (napi_get_value_int64(env, v, &out[i].dims[k])) return "run: a dimension is not a number";
      if (out[i].dims[k] < 0) return "run: a dimension is negative";
      elements *= (size_t)out[i].dims[k];
    }
    out[i].bytes = elements * size;
  }
  *count = n;
  return NULL;
}

/* The inputs' names, types and shapes as one key; returns 0 when they do not fit (two cut keys could compare equal). */
static int signature_of(char *sig, size_t cap, const Spec *specs, uint32_t n) {
  size_t at = 0;
  sig[0] = '\0';
  for (uint32_t i = 0; i < n && at < cap; i++) {
    at += snprintf(sig + at, cap - at, "%s:%d:", specs[i].name, specs[i].type);
    for (size_t k = 0; k < specs[i].rank && at < cap; k++)
      at += snprintf(sig + at, cap - at, "%lld,", (long long)specs[i].dims[k]);
    if (at < cap) at += snprintf(sig + at, cap - at, ";");
  }
  return at < cap;
}

/*
 * A new binding for one input signature: device tensors for every input, bound once. The outputs are bound to the
 * device for ONNX Runtime to allocate on the first run; that run tells their types and shapes, and fixed tensors are
 * bound in their place before the second run, the one where ONNX Runtime captures a graph id.
 */
static const char *new_binding(GraphSession *s, const Spec *ins, uint32_t n_in, const char *signature,
                               Binding **out, char *msg) {
  Binding *b = calloc(1, sizeof *b);
  if (!b) return "out of memory";
  b->graph_id = -1;
  b->n_in = n_in;
  b->n_out = s->n_outputs;
  size_t n = n_in + b->n_out;
  b->values = calloc(n ? n : 1, sizeof *b->values);
  b->data = calloc(n ? n : 1, sizeof *b->data);
  b->bytes = calloc(n ? n : 1, sizeof *b->bytes);
  b->out_types = calloc(b->n_out ? b->n_out : 1, sizeof *b->out_types);
  b->out_rank = calloc(b->n_out ? b->n_out : 1, sizeof *b->out_rank);
  b->out_dims = calloc(b->n_out ? b->n_out : 1, sizeof *b->out_dims);
  b->signature = copy_string(signature);
  if (!b->values || !b->data || !b->bytes || !b->out_types || !b->out_rank || !b->out_dims || !b->signature) {
    free_binding(b);
    return "out of memory";
  }
  OrtStatus *st = ORT_STATUS(CreateIoBinding, void *, void **)(s->session, &b->io);
  for (uint32_t i = 0; !st && i < n_in; i++) {
    st = ORT_STATUS(CreateTensorAsOrtValue, void *, const int64_t *, size_t, int, void **)(
        s->allocator, ins[i].dims, ins[i].rank, ins[i].type, &b->values[i]);
    if (!st) st = ORT_STATUS(GetTensorMutableData, void *, void **)(b->values[i], &b->data[i]);
    b->bytes[i] = ins[i].bytes;
    if (!st) st = ORT_STATUS(BindInput, void *, const char *, const void *)(b->io, ins[i].name, b->values[i]);
  }
  for (size_t i = 0; !st && i < b->n_out; i++)
    st = ORT_STATUS(BindOutputToDevice, void *, const char *, const void *)(b->io, s->output_names[i], s->memory);
  if (!st) st = ORT_STATUS(CreateRunOptions, void **)(&b->run_options);
  /* the first run, whose outputs ONNX Runtime allocates, must never be a capture: it skips graphs (-1) */
  if (!st && s->cuda_graph) st = ORT_STATUS(CreateRunOptions, void **)(&b->first_run_options);
  if (!st && s->cuda_graph)
    st = ORT_STATUS(AddRunConfigEntry, void *, const char *, const char *)(b->first_run_options, "gpu_graph_id", "-1");
  if (!st && s->cuda_graph) {
    /* one captured graph per signature, ids from 1 (ONNX Runtime keeps 0 for runs without the annotation); past
       MAX_GRAPHS, -1 runs without capture */
    char id[16];
    b->graph_id = s->next_graph_id < MAX_GRAPHS ? 1 + s->next_graph_id++ : -1;
    snprintf(id, sizeof id, "%d", b->graph_id);
    st = ORT_STATUS(AddRunConfigEntry, void *, const char *, const char *)(b->run_options, "gpu_graph_id", id);
  }
  if (st) {
    free_binding(b);
    return ort_status_text(st, "binding the inputs and outputs", msg, MSG);
  }
  *out = b;
  return NULL;
}

/* Reads a tensor's element type and shape. */
static OrtStatus *type_and_shape(const void *value, int *type, int64_t *dims, size_t *rank, size_t *elements) {
  void *info = NULL;
  OrtStatus *st = ORT_STATUS(GetTensorTypeAndShape, const void *, void **)(value, &info);
  if (!st) st = ORT_STATUS(GetTensorElementType, const void *, int *)(info, type);
  if (!st) st = ORT_STATUS(GetDimensionsCount, const void *, size_t *)(info, rank);
  if (!st && *rank > MAX_RANK) st = ORT_FN(CreateStatus, OrtStatus *, int, const char *)(1, "an output has rank > 8");
  if (!st) st = ORT_STATUS(GetDimensions, const void *, int64_t *, size_t)(info, dims, *rank);
  if (!st) st = ORT_STATUS(GetTensorShapeElementCount, const void *, size_t *)(info, elements);
  if (info) ORT_FN(ReleaseTensorTypeAndShapeInfo, void, void *)(info);
  return st;
}

/*
 * After a binding's first run: notes the outputs ONNX Runtime allocated (type, shape, where), and returns them for
 * this run's results in *first (to release after copying); then binds fixed tensors of those shapes in their place.
 */
static const char *learn_outputs(GraphSession *s, Binding *b, void ***first, size_t *count, char *msg) {
  void *alloc = NULL;
  OrtStatus *st = ORT_STATUS(GetAllocatorWithDefaultOptions, void **)(&alloc);
  if (!st) st = ORT_STATUS(GetBoundOutputValues, const void *, void *, void ***, size_t *)(b->io, alloc, first, count);
  if (st) return ort_status_text(st, "reading the outputs", msg, MSG);
  if (*count != b->n_out) return "run: ONNX Runtime returned another number of outputs than the session has";
  for (size_t i = 0; !st && i < b->n_out; i++) {
    size_t k = b->n_in + i, elements = 0;
    st = type_and_shape((*first)[i], &b->out_types[i], b->out_dims[i], &b->out_rank[i], &elements);
    if (!st && !element_size(b->out_types[i])) {
      snprintf(msg, MSG, "run: output %s has element type %d, which this addon does not copy", s->output_names[i],
               b->out_types[i]);
      return msg;
    }
    if (!st) b->bytes[k] = elements * element_size(b->out_types[i]);
    /* where this run's result is; the fixed tensor for later runs is made below */
    if (!st) st = ORT_STATUS(GetTensorMutableData, void *, void **)((*first)[i], &b->data[k]);
  }
  if (st) return ort_status_text(st, "reading the outputs", msg, MSG);
  return NULL;
}

static const char *bind_fixed_outputs(GraphSession *s, Binding *b, char *msg) {
  OrtStatus *st = NULL;
  ORT_FN(ClearBoundOutputs, void, void *)(b->io);
  for (size_t i = 0; !st && i < b->n_out; i++) {
    size_t k = b->n_in + i;
    st = ORT_STATUS(CreateTensorAsOrtValue, void *, const int64_t *, size_t, int, void **)(
        s->allocator, b->out_dims[i], b->out_rank[i], b->out_types[i], &b->values[k]);
    if (!st) st = ORT_STATUS(GetTensorMutableData, void *, void **)(b->values[k], &b->data[k]);
    if (!st) st = ORT_STATUS(BindOutput, void *, const char *, const void *)(b->io, s->output_names[i], b->values[k]);
  }
  if (st) return ort_status_text(st, "binding the outputs", msg, MSG);
  b->learned = 1;
  return NULL;
}

/* Releases the outputs GetBoundOutputValues returned, and their array. */
static void release_first(void **first, size_t n) {
  if (!first) return;
  for (size_t i = 0; i < n; i++)
    if (first[i]) ORT_FN(ReleaseValue, void, void *)(first[i]);
  void *alloc = NULL;
  OrtStatus *st = ORT_STATUS(GetAllocatorWithDefaultOptions, void **)(&alloc);
  if (!st) st = ORT_STATUS(AllocatorFree, void *, void *)(alloc, first);
  if (st) ORT_FN(ReleaseStatus, void, OrtStatus *)(st);
}

static napi_value output_object(napi_env env, const char *name, int type, const int64_t *dims, size_t rank,
                                napi_value data) {
  napi_value o, v, d;
  napi_create_object(env, &o);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "name", v);
  napi_create_int64(env, type, &v);
  napi_set_named_property(env, o, "type", v);
  napi_create_array_with_length(env, rank, &d);
  for (size_t k = 0; k < rank; k++) {
    napi_create_int64(env, dims[k], &v);
    napi_set_element(env, d, (uint32_t)k, v);
  }
  napi_set_named_property(env, o, "dims", d);
  napi_set_named_property(env, o, "data", data);
  return o;
}

napi_value js_run(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  char msg[MSG];
  /* per thread: engines on several GPUs may run bound sessions in worker threads of one process */
  static __thread Spec ins[MAX_IO];
  static __thread char signature[65536];
  uint32_t n_in = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) || argc < 5)
    return napi_fail(env, "run(handle, inNames, inTypes, inDims, inData)");
  GraphSession *s = session_of(env, argv[0]);
  if (!s) return napi_fail(env, "run: not a live session handle");
  const char *why = read_specs(env, argv[1], argv[2], argv[3], ins, &n_in, msg);
  if (why) return napi_fail(env, why);
  uint32_t n_data = 0;
  if (napi_get_array_length(env, argv[4], &n_data) || n_data != n_in)
    return napi_fail(env, "run: one data array per input");
  if (!signature_of(signature, sizeof signature, ins, n_in))
    return napi_fail(env, "run: the inputs' names and shapes are too long to key a binding");

  /* most recently used first; past MAX_BINDINGS the least recently used is freed (its graph, if any, is never
     replayed again: a returning shape gets a new binding and id) */
  Binding *b = s->bindings, *prev = NULL;
  size_t count = 0;
  while (b && strcmp(b->signature, signature) != 0) {
    prev = b;
    b = b->next;
    count++;
  }
  if (b && prev) {
    prev->next = b->next;
    b->next = s->bindings;
    s->bindings = b;
  }
  if (!b) {
    if (count >= MAX_BINDINGS) {
      Binding *last = s->bindings, *before = NULL;
      while (last->next) {
        before = last;
        last = last->next;
      }
      if (before)
        before->next = NULL;
      else
        s->bindings = NULL;
      free_binding(last);
    }
    why = new_binding(s, ins, n_in, signature, &b, msg);
    if (why) return napi_fail(env, why);
    b->next = s->bindings;
    s->bindings = b;
  }

  for (uint32_t i = 0; i < n_in; i++) {
    napi_value arr;
    napi_typedarray_type type;
    size_t length = 0, offset = 0;
    void *data = NULL;
    napi_value buffer;
    napi_get_element(env, argv[4], i, &arr);
    if (napi_get_typedarray_info(env, arr, &type, &length, &data, &buffer, &offset))
      return napi_fail(env, "run: input data must be typed arrays");
    if (!kind_fits(type, ins[i].type)) {
      snprintf(msg, MSG, "run: input %s: its typed array does not hold element type %d", ins[i].name, ins[i].type);
      return napi_fail(env, msg);
    }
    size_t bytes = length * element_size(ins[i].type);
    if (bytes != b->bytes[i]) {
      snprintf(msg, MSG, "run: input %s has %zu bytes of data for %zu bytes of tensor", ins[i].name, bytes,
               b->bytes[i]);
      return napi_fail(env, msg);
    }
    why = copy_bytes(s, b->data[i], data, b->bytes[i], 1, msg);
    if (why) return napi_fail(env, why);
  }
  why = inputs_landed(s, msg);
  if (why) return napi_fail(env, why);

  /* "ONNX Runtime ..." marks failures of the run itself; "(graph capture)" those of the runs where ONNX Runtime may
     capture (a graph id's first two, after the binding's first run), which bound-session.ts retries without graphs */
  const char *what = b->graph_id >= 0 && b->runs < 3 ? "ONNX Runtime run (graph capture)" : "ONNX Runtime run";
  const void *options = !b->learned && b->first_run_options ? b->first_run_options : b->run_options;
  CHECK(ORT_STATUS(RunWithBinding, void *, const void *, const void *)(s->session, options, b->io), what);
  CHECK(ORT_STATUS(SynchronizeBoundOutputs, void *)(b->io), what);
  b->runs++;

  void **first = NULL; /* the first run's outputs, allocated by ONNX Runtime */
  size_t n_first = 0;
  if (!b->learned) {
    why = learn_outputs(s, b, &first, &n_first, msg);
    if (why) {
      release_first(first, n_first); /* left unlearned: the next run learns again */
      return napi_fail(env, why);
    }
  }
  napi_value result;
  napi_create_array_with_length(env, b->n_out, &result);
  for (size_t i = 0; i < b->n_out && !why; i++) {
    void *host = NULL;
    napi_value ab;
    size_t k = b->n_in + i;
    if (napi_create_arraybuffer(env, b->bytes[k], &host, &ab)) {
      why = "run: out of memory";
      break;
    }
    why = copy_bytes(s, host, b->data[k], b->bytes[k], 2, msg);
    if (!why)
      napi_set_element(env, result, (uint32_t)i,
                       output_object(env, s->output_names[i], b->out_types[i], b->out_dims[i], b->out_rank[i], ab));
  }
  if (first) {
    release_first(first, n_first);
    if (!why) why = bind_fixed_outputs(s, b, msg);
  }
  if (why) return napi_fail(env, why);
  return result;
}
