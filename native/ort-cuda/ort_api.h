/*
 * The parts of ONNX Runtime's C API this addon calls: the function table OrtApi (OrtGetApiBase()->GetApi), used by
 * slot number. The table only grows between releases (new functions are appended), so a slot number holds for every
 * release from the C API version that added it; everything here exists from version 11 (ONNX Runtime 1.11) on.
 * Functions keep their C API names, prefixed ort_ (e.g. ORT(RunWithBinding)).
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct OrtStatus OrtStatus;
typedef struct {
  const void *(*GetApi)(uint32_t version);
  const char *(*GetVersionString)(void);
} OrtApiBase;
#define ORT_MIN_API_VERSION 11u

/* element types (ONNXTensorElementDataType) */
enum { ORT_FLOAT = 1, ORT_UINT8 = 2, ORT_INT8 = 3, ORT_INT32 = 6, ORT_INT64 = 7, ORT_BOOL = 9, ORT_FLOAT16 = 10 };

enum {
  SLOT_CreateStatus = 0,
  SLOT_GetErrorCode = 1,
  SLOT_GetErrorMessage = 2,
  SLOT_CreateEnv = 3,
  SLOT_CreateSession = 7,
  SLOT_CreateSessionFromArray = 8,
  SLOT_CreateSessionOptions = 10,
  SLOT_SetSessionLogId = 20,
  SLOT_SetSessionLogSeverityLevel = 22,
  SLOT_SetSessionGraphOptimizationLevel = 23,
  SLOT_SessionGetInputCount = 30,
  SLOT_SessionGetOutputCount = 31,
  SLOT_SessionGetInputName = 36,
  SLOT_SessionGetOutputName = 37,
  SLOT_CreateRunOptions = 39,
  SLOT_CreateTensorAsOrtValue = 48,
  SLOT_GetTensorMutableData = 51,
  SLOT_GetTensorElementType = 60,
  SLOT_GetDimensionsCount = 61,
  SLOT_GetDimensions = 62,
  SLOT_GetTensorShapeElementCount = 64,
  SLOT_GetTensorTypeAndShape = 65,
  SLOT_CreateMemoryInfo = 68,
  SLOT_CreateCpuMemoryInfo = 69,
  SLOT_AllocatorFree = 76,
  SLOT_GetAllocatorWithDefaultOptions = 78,
  SLOT_ReleaseEnv = 92,
  SLOT_ReleaseStatus = 93,
  SLOT_ReleaseMemoryInfo = 94,
  SLOT_ReleaseSession = 95,
  SLOT_ReleaseValue = 96,
  SLOT_ReleaseRunOptions = 97,
  SLOT_ReleaseTensorTypeAndShapeInfo = 99,
  SLOT_ReleaseSessionOptions = 100,
  SLOT_AddSessionConfigEntry = 130,
  SLOT_CreateAllocator = 131,
  SLOT_ReleaseAllocator = 132,
  SLOT_RunWithBinding = 133,
  SLOT_CreateIoBinding = 134,
  SLOT_ReleaseIoBinding = 135,
  SLOT_BindInput = 136,
  SLOT_BindOutput = 137,
  SLOT_BindOutputToDevice = 138,
  SLOT_GetBoundOutputValues = 140,
  SLOT_ClearBoundOutputs = 142,
  SLOT_CreateAndRegisterAllocator = 144,
  SLOT_ReleaseArenaCfg = 157,
  SLOT_CreateArenaCfgV2 = 164,
  SLOT_AddRunConfigEntry = 165,
  SLOT_SynchronizeBoundOutputs = 203,
  SLOT_SessionOptionsAppendExecutionProvider_CUDA_V2 = 204,
  SLOT_CreateCUDAProviderOptions = 205,
  SLOT_UpdateCUDAProviderOptions = 206,
  SLOT_GetCUDAProviderOptionsAsString = 207,
  SLOT_ReleaseCUDAProviderOptions = 208,
  SLOT_CreateAndRegisterAllocatorV2 = 259, /* C API version 15 (ONNX Runtime 1.15) on: check the release first */
};

/* the process's table (ort_table_of) and the CUDA_V2 append as it was before provider_options.c wrapped it */
extern void **ort_api;
extern void *ort_original_append_cuda_v2;

/* Finds the table of an already-loaded libonnxruntime (path as loaded); NULL with *why set when it cannot. */
void **ort_table_of(const char *libonnxruntime_path, const char **why, const char **version);

/* Typed calls through the table. */
#define ORT_FN(slot, ret, ...) ((ret(*)(__VA_ARGS__))ort_api[SLOT_##slot])
#define ORT_STATUS(slot, ...) ORT_FN(slot, OrtStatus *, __VA_ARGS__)

/* The message of a failed status (releasing it) as "what: message" in buf; returns buf. */
const char *ort_status_text(OrtStatus *st, const char *what, char *buf, size_t len);
