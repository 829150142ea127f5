/*
 * VK_LAYER_TCD_device_select: a Vulkan explicit layer that shows an application one physical device only.
 *
 * Why: ONNX Runtime's WebGPU EP runs on Dawn, and Dawn picks its Vulkan adapter by power preference with no index
 * option, so on a host with several GPUs every process lands on the same one. Below Dawn, this layer filters
 * vkEnumeratePhysicalDevices / vkEnumeratePhysicalDeviceGroups(KHR) down to the device chosen by the environment:
 *
 *   TCD_VULKAN_DEVICE unset or empty  pass everything through unchanged
 *   TCD_VULKAN_DEVICE=N (N >= 0)      only the N-th device in PCI bus order (domain, bus, device, function; the order
 *                                     of nvidia-smi's index and of CUDA with CUDA_DEVICE_ORDER=PCI_BUS_ID) when every
 *                                     device reports VK_EXT_pci_bus_info, else the N-th in the driver's order
 *   N out of range or not a number    zero devices, and one line on stderr saying why (so a caller fails loudly
 *                                     instead of silently running on another GPU)
 *   TCD_VULKAN_DEVICE_DEBUG=1         one line on stderr naming the device chosen and the order used
 *
 * Mesa's implicit VK_LAYER_MESA_device_select (mesa-vulkan-drivers 22.3) sits above this layer and crashes on an
 * empty device list, so callers also set NODEVICE_SELECT=1 (its documented off switch).
 *
 * Enable it with (see server/engine/runtime/gpu-pinning.ts):
 *   VK_ADD_LAYER_PATH=<dir with VkLayer_tcd_device_select.json> VK_LOADER_LAYERS_ENABLE=VK_LAYER_TCD_device_select
 *
 * The loader/layer interface is version 2 (vkNegotiateLoaderLayerInterfaceVersion). Per-instance and per-device
 * state lives in small lists keyed by the dispatch key (the loader's dispatch-table pointer stored at the start of
 * every dispatchable handle; physical devices share their instance's key).
 */
#include <vulkan/vulkan.h>
#include <vulkan/vk_layer.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
#define LAYER_NAME "VK_LAYER_TCD_device_select"
#define ENV_NAME "TCD_VULKAN_DEVICE"

typedef void *DispatchKey;
static DispatchKey key_of(const void *handle) { return *(DispatchKey *)handle; }

typedef struct InstanceRec {
  struct InstanceRec *next;
  DispatchKey key;
  VkInstance instance;
  uint32_t api_version;     /* apiVersion the application asked for (0 = 1.0) */
  int has_props2_khr;       /* VK_KHR_get_physical_device_properties2 enabled by the application */
  PFN_vkGetInstanceProcAddr gipa;
  PFN_vkDestroyInstance destroy;
  PFN_vkEnumeratePhysicalDevices enum_devices;
  PFN_vkEnumeratePhysicalDeviceGroups enum_groups;         /* core 1.1; may be NULL */
  PFN_vkEnumeratePhysicalDeviceGroupsKHR enum_groups_khr;  /* VK_KHR_device_group_creation; may be NULL */
  PFN_vkEnumerateDeviceExtensionProperties enum_dev_exts;
  PFN_vkGetPhysicalDeviceProperties get_props;
  PFN_vkGetPhysicalDeviceProperties2 get_props2;
  PFN_vkGetPhysicalDeviceProperties2KHR get_props2_khr;
} InstanceRec;

typedef struct DeviceRec {
  struct DeviceRec *next;
  DispatchKey key;
  PFN_vkGetDeviceProcAddr gdpa;
  PFN_vkDestroyDevice destroy;
} DeviceRec;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static InstanceRec *g_instances;
static DeviceRec *g_devices;

static InstanceRec *find_instance(DispatchKey key) {
  pthread_mutex_lock(&g_lock);
  InstanceRec *r = g_instances;
  while (r && r->key != key) r = r->next;
  pthread_mutex_unlock(&g_lock);
  return r;
}

static DeviceRec *find_device(DispatchKey key) {
  pthread_mutex_lock(&g_lock);
  DeviceRec *r = g_devices;
  while (r && r->key != key) r = r->next;
  pthread_mutex_unlock(&g_lock);
  return r;
}

/* ---- which device ------------------------------------------------------------------------------------------- */

enum { PASS_THROUGH = -1, BAD_VALUE = -2 };

/* The requested index, PASS_THROUGH when the variable is unset/empty, BAD_VALUE when it is not an index. */
static long requested_index(void) {
  const char *v = getenv(ENV_NAME);
  if (!v || !*v) return PASS_THROUGH;
  char *end = NULL;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < 0) return BAD_VALUE;
  return n;
}

/* One line per process and reason: Dawn enumerates several times per instance. */
static void complain_once(long index, uint32_t count) {
  static int said_range, said_value;
  pthread_mutex_lock(&g_lock);
  int *said = index == BAD_VALUE ? &said_value : &said_range;
  int first = !*said;
  *said = 1;
  pthread_mutex_unlock(&g_lock);
  if (!first) return;
  if (index == BAD_VALUE)
    fprintf(stderr, LAYER_NAME ": " ENV_NAME "=\"%s\" is not a device index (0, 1, ...); exposing no Vulkan devices\n", getenv(ENV_NAME));
  else
    fprintf(stderr, LAYER_NAME ": " ENV_NAME "=%ld but this host has %u Vulkan physical device%s (valid: 0..%ld); exposing none\n",
            index, count, count == 1 ? "" : "s", (long)count - 1);
}

/* All physical devices from the next layer, retrying if the list changes between the two calls. */
static VkResult all_devices(InstanceRec *r, uint32_t *count, VkPhysicalDevice **out) {
  for (;;) {
    uint32_t n = 0;
    VkResult res = r->enum_devices(r->instance, &n, NULL);
    if (res != VK_SUCCESS) return res;
    VkPhysicalDevice *list = calloc(n ? n : 1, sizeof *list);
    if (!list) return VK_ERROR_OUT_OF_HOST_MEMORY;
    res = r->enum_devices(r->instance, &n, list);
    if (res == VK_INCOMPLETE) { free(list); continue; }
    if (res != VK_SUCCESS) { free(list); return res; }
    *count = n;
    *out = list;
    return VK_SUCCESS;
  }
}

static int supports_pci_bus_info(InstanceRec *r, VkPhysicalDevice pd) {
  uint32_t n = 0;
  if (r->enum_dev_exts(pd, NULL, &n, NULL) != VK_SUCCESS || n == 0) return 0;
  VkExtensionProperties *exts = calloc(n, sizeof *exts);
  if (!exts) return 0;
  int found = 0;
  if (r->enum_dev_exts(pd, NULL, &n, exts) >= VK_SUCCESS)
    for (uint32_t i = 0; i < n && !found; i++) found = !strcmp(exts[i].extensionName, VK_EXT_PCI_BUS_INFO_EXTENSION_NAME);
  free(exts);
  return found;
}

typedef struct { VkPhysicalDevice pd; uint32_t domain, bus, dev, fn; } PciSlot;

static int cmp_pci(const void *a, const void *b) {
  const PciSlot *x = a, *y = b;
  uint32_t kx[4] = {x->domain, x->bus, x->dev, x->fn}, ky[4] = {y->domain, y->bus, y->dev, y->fn};
  for (int i = 0; i < 4; i++) if (kx[i] != ky[i]) return kx[i] < ky[i] ? -1 : 1;
  return 0;
}

/* Reads one device's PCI address; 0 when properties2 is not usable for it. */
static int pci_address(InstanceRec *r, VkPhysicalDevice pd, PciSlot *slot) {
  VkPhysicalDeviceProperties p;
  r->get_props(pd, &p);
  /* the core entry point needs a 1.1 instance and device; the KHR one needs the extension enabled at creation */
  int core = r->get_props2 && r->api_version >= VK_API_VERSION_1_1 && p.apiVersion >= VK_API_VERSION_1_1;
  if (!core && !(r->get_props2_khr && r->has_props2_khr)) return 0;
  VkPhysicalDevicePCIBusInfoPropertiesEXT pci = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PCI_BUS_INFO_PROPERTIES_EXT};
  VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &pci};
  if (core) r->get_props2(pd, &p2); else r->get_props2_khr(pd, &p2);
  *slot = (PciSlot){pd, pci.pciDomain, pci.pciBus, pci.pciDevice, pci.pciFunction};
  return 1;
}

/*
 * The device to expose: *chosen = the selected device or VK_NULL_HANDLE (none exposed). Returns 0 with
 * *pass_through = 1 when the layer is not filtering.
 */
static VkResult select_device(InstanceRec *r, int *pass_through, VkPhysicalDevice *chosen) {
  long want = requested_index();
  *pass_through = want == PASS_THROUGH;
  *chosen = VK_NULL_HANDLE;
  if (*pass_through) return VK_SUCCESS;
  uint32_t n = 0;
  VkPhysicalDevice *list = NULL;
  VkResult res = all_devices(r, &n, &list);
  if (res != VK_SUCCESS) return res;
  if (want == BAD_VALUE || want >= (long)n) {
    complain_once(want, n);
    free(list);
    return VK_SUCCESS;
  }
  PciSlot *slots = calloc(n, sizeof *slots);
  int by_pci = slots != NULL;
  for (uint32_t i = 0; i < n && by_pci; i++) by_pci = supports_pci_bus_info(r, list[i]) && pci_address(r, list[i], &slots[i]);
  if (by_pci) {
    qsort(slots, n, sizeof *slots, cmp_pci);
    *chosen = slots[want].pd;
  } else {
    *chosen = list[want];
  }
  static int said_choice;
  if (getenv("TCD_VULKAN_DEVICE_DEBUG") && !__atomic_exchange_n(&said_choice, 1, __ATOMIC_RELAXED)) {
    VkPhysicalDeviceProperties p;
    r->get_props(*chosen, &p);
    fprintf(stderr, LAYER_NAME ": device %ld of %u (%s order): %s\n", want, n, by_pci ? "PCI bus" : "driver", p.deviceName);
  }
  free(slots);
  free(list);
  return VK_SUCCESS;
}

/* ---- instance entry points ---------------------------------------------------------------------------------- */

static VKAPI_ATTR VkResult VKAPI_CALL layer_EnumeratePhysicalDevices(VkInstance instance, uint32_t *pCount, VkPhysicalDevice *pDevices) {
  InstanceRec *r = find_instance(key_of(instance));
  if (!r) return VK_ERROR_INITIALIZATION_FAILED;
  int pass;
  VkPhysicalDevice chosen;
  VkResult res = select_device(r, &pass, &chosen);
  if (res != VK_SUCCESS) return res;
  if (pass) return r->enum_devices(instance, pCount, pDevices);
  uint32_t total = chosen ? 1 : 0;
  if (!pDevices) { *pCount = total; return VK_SUCCESS; }
  uint32_t written = *pCount < total ? *pCount : total;
  if (written) pDevices[0] = chosen;
  *pCount = written;
  return written < total ? VK_INCOMPLETE : VK_SUCCESS;
}

/* Shared by the core and KHR entry points: the chosen device as a group of one. */
static VkResult enumerate_groups(VkInstance instance, uint32_t *pCount, VkPhysicalDeviceGroupProperties *pGroups, int khr) {
  InstanceRec *r = find_instance(key_of(instance));
  if (!r) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkEnumeratePhysicalDeviceGroups next = khr ? r->enum_groups_khr : r->enum_groups;
  if (!next) return VK_ERROR_EXTENSION_NOT_PRESENT;
  int pass;
  VkPhysicalDevice chosen;
  VkResult res = select_device(r, &pass, &chosen);
  if (res != VK_SUCCESS) return res;
  if (pass) return next(instance, pCount, pGroups);
  uint32_t total = chosen ? 1 : 0;
  if (!pGroups) { *pCount = total; return VK_SUCCESS; }
  uint32_t written = *pCount < total ? *pCount : total;
  if (written) {
    /* keep the caller's sType/pNext; a single device never uses subset allocation */
    pGroups[0].physicalDeviceCount = 1;
    memset(pGroups[0].physicalDevices, 0, sizeof pGroups[0].physicalDevices);
    pGroups[0].physicalDevices[0] = chosen;
    pGroups[0].subsetAllocation = VK_FALSE;
  }
  *pCount = written;
  return written < total ? VK_INCOMPLETE : VK_SUCCESS;
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_EnumeratePhysicalDeviceGroups(VkInstance instance, uint32_t *pCount, VkPhysicalDeviceGroupProperties *pGroups) {
  return enumerate_groups(instance, pCount, pGroups, 0);
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_EnumeratePhysicalDeviceGroupsKHR(VkInstance instance, uint32_t *pCount, VkPhysicalDeviceGroupProperties *pGroups) {
  return enumerate_groups(instance, pCount, pGroups, 1);
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_CreateInstance(const VkInstanceCreateInfo *pCreateInfo, const VkAllocationCallbacks *pAllocator, VkInstance *pInstance) {
  VkLayerInstanceCreateInfo *link = (VkLayerInstanceCreateInfo *)pCreateInfo->pNext;
  while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO && link->function == VK_LAYER_LINK_INFO))
    link = (VkLayerInstanceCreateInfo *)link->pNext;
  if (!link || !link->u.pLayerInfo) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  link->u.pLayerInfo = link->u.pLayerInfo->pNext; /* the next layer reads its own link */
  PFN_vkCreateInstance create = (PFN_vkCreateInstance)gipa(VK_NULL_HANDLE, "vkCreateInstance");
  if (!create) return VK_ERROR_INITIALIZATION_FAILED;
  VkResult res = create(pCreateInfo, pAllocator, pInstance);
  if (res != VK_SUCCESS) return res;

  InstanceRec *r = calloc(1, sizeof *r);
  if (!r) {
    PFN_vkDestroyInstance destroy = (PFN_vkDestroyInstance)gipa(*pInstance, "vkDestroyInstance");
    if (destroy) destroy(*pInstance, pAllocator);
    return VK_ERROR_OUT_OF_HOST_MEMORY;
  }
  VkInstance inst = *pInstance;
  r->key = key_of(inst);
  r->instance = inst;
  r->api_version = pCreateInfo->pApplicationInfo ? pCreateInfo->pApplicationInfo->apiVersion : 0;
  for (uint32_t i = 0; i < pCreateInfo->enabledExtensionCount; i++)
    if (!strcmp(pCreateInfo->ppEnabledExtensionNames[i], VK_KHR_GET_PHYSICAL_DEVICE_PROPERTIES_2_EXTENSION_NAME)) r->has_props2_khr = 1;
  r->gipa = gipa;
#define NEXT(field, type, name) r->field = (type)gipa(inst, name)
  NEXT(destroy, PFN_vkDestroyInstance, "vkDestroyInstance");
  NEXT(enum_devices, PFN_vkEnumeratePhysicalDevices, "vkEnumeratePhysicalDevices");
  NEXT(enum_groups, PFN_vkEnumeratePhysicalDeviceGroups, "vkEnumeratePhysicalDeviceGroups");
  NEXT(enum_groups_khr, PFN_vkEnumeratePhysicalDeviceGroupsKHR, "vkEnumeratePhysicalDeviceGroupsKHR");
  NEXT(enum_dev_exts, PFN_vkEnumerateDeviceExtensionProperties, "vkEnumerateDeviceExtensionProperties");
  NEXT(get_props, PFN_vkGetPhysicalDeviceProperties, "vkGetPhysicalDeviceProperties");
  NEXT(get_props2, PFN_vkGetPhysicalDeviceProperties2, "vkGetPhysicalDeviceProperties2");
  NEXT(get_props2_khr, PFN_vkGetPhysicalDeviceProperties2KHR, "vkGetPhysicalDeviceProperties2KHR");
#undef NEXT
  pthread_mutex_lock(&g_lock);
  r->next = g_instances;
  g_instances = r;
  pthread_mutex_unlock(&g_lock);
  return VK_SUCCESS;
}

static VKAPI_ATTR void VKAPI_CALL layer_DestroyInstance(VkInstance instance, const VkAllocationCallbacks *pAllocator) {
  if (!instance) return;
  DispatchKey key = key_of(instance);
  pthread_mutex_lock(&g_lock);
  InstanceRec **p = &g_instances;
  while (*p && (*p)->key != key) p = &(*p)->next;
  InstanceRec *r = *p;
  if (r) *p = r->next;
  pthread_mutex_unlock(&g_lock);
  if (!r) return;
  r->destroy(instance, pAllocator);
  free(r);
}

/* ---- device entry points: this layer filters nothing per device, it only keeps the chain intact -------------- */

static VKAPI_ATTR VkResult VKAPI_CALL layer_CreateDevice(VkPhysicalDevice physicalDevice, const VkDeviceCreateInfo *pCreateInfo,
                                                        const VkAllocationCallbacks *pAllocator, VkDevice *pDevice) {
  VkLayerDeviceCreateInfo *link = (VkLayerDeviceCreateInfo *)pCreateInfo->pNext;
  while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO && link->function == VK_LAYER_LINK_INFO))
    link = (VkLayerDeviceCreateInfo *)link->pNext;
  if (!link || !link->u.pLayerInfo) return VK_ERROR_INITIALIZATION_FAILED;
  InstanceRec *ir = find_instance(key_of(physicalDevice));
  if (!ir) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  PFN_vkGetDeviceProcAddr gdpa = link->u.pLayerInfo->pfnNextGetDeviceProcAddr;
  link->u.pLayerInfo = link->u.pLayerInfo->pNext;
  PFN_vkCreateDevice create = (PFN_vkCreateDevice)gipa(ir->instance, "vkCreateDevice");
  if (!create) return VK_ERROR_INITIALIZATION_FAILED;
  VkResult res = create(physicalDevice, pCreateInfo, pAllocator, pDevice);
  if (res != VK_SUCCESS) return res;
  DeviceRec *d = calloc(1, sizeof *d);
  PFN_vkDestroyDevice destroy = (PFN_vkDestroyDevice)gdpa(*pDevice, "vkDestroyDevice");
  if (!d) {
    if (destroy) destroy(*pDevice, pAllocator);
    return VK_ERROR_OUT_OF_HOST_MEMORY;
  }
  d->key = key_of(*pDevice);
  d->gdpa = gdpa;
  d->destroy = destroy;
  pthread_mutex_lock(&g_lock);
  d->next = g_devices;
  g_devices = d;
  pthread_mutex_unlock(&g_lock);
  return VK_SUCCESS;
}

static VKAPI_ATTR void VKAPI_CALL layer_DestroyDevice(VkDevice device, const VkAllocationCallbacks *pAllocator) {
  if (!device) return;
  DispatchKey key = key_of(device);
  pthread_mutex_lock(&g_lock);
  DeviceRec **p = &g_devices;
  while (*p && (*p)->key != key) p = &(*p)->next;
  DeviceRec *d = *p;
  if (d) *p = d->next;
  pthread_mutex_unlock(&g_lock);
  if (!d) return;
  if (d->destroy) d->destroy(device, pAllocator);
  free(d);
}

/* ---- proc-address lookup and negotiation ---------------------------------------------------------------------- */

/*
 * The exported names are thin wrappers: inside a shared object, a reference to an exported symbol such as
 * vkGetInstanceProcAddr binds to the first definition in the process (libvulkan's trampoline), so everything the
 * layer hands out points at the static implementations instead.
 */
static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL layer_GetDeviceProcAddr(VkDevice device, const char *pName);

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL layer_GetInstanceProcAddr(VkInstance instance, const char *pName) {
  if (!strcmp(pName, "vkGetInstanceProcAddr")) return (PFN_vkVoidFunction)layer_GetInstanceProcAddr;
  if (!strcmp(pName, "vkCreateInstance")) return (PFN_vkVoidFunction)layer_CreateInstance;
  if (!strcmp(pName, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)layer_GetDeviceProcAddr;
  if (!instance) return NULL;
  InstanceRec *r = find_instance(key_of(instance));
  if (!r) return NULL;
  /* intercept only what the next layer provides, so a missing extension entry point stays NULL */
  if (!strcmp(pName, "vkDestroyInstance")) return (PFN_vkVoidFunction)layer_DestroyInstance;
  if (!strcmp(pName, "vkEnumeratePhysicalDevices")) return (PFN_vkVoidFunction)layer_EnumeratePhysicalDevices;
  if (!strcmp(pName, "vkEnumeratePhysicalDeviceGroups"))
    return r->enum_groups ? (PFN_vkVoidFunction)layer_EnumeratePhysicalDeviceGroups : NULL;
  if (!strcmp(pName, "vkEnumeratePhysicalDeviceGroupsKHR"))
    return r->enum_groups_khr ? (PFN_vkVoidFunction)layer_EnumeratePhysicalDeviceGroupsKHR : NULL;
  if (!strcmp(pName, "vkCreateDevice")) return (PFN_vkVoidFunction)layer_CreateDevice;
  return r->gipa(instance, pName);
}

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL layer_GetDeviceProcAddr(VkDevice device, const char *pName) {
  if (!strcmp(pName, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)layer_GetDeviceProcAddr;
  if (!device) return NULL;
  DeviceRec *d = find_device(key_of(device));
  if (!d) return NULL;
  if (!strcmp(pName, "vkDestroyDevice")) return (PFN_vkVoidFunction)layer_DestroyDevice;
  return d->gdpa(device, pName);
}

EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetInstanceProcAddr(VkInstance instance, const char *pName) {
  return layer_GetInstanceProcAddr(instance, pName);
}

EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetDeviceProcAddr(VkDevice device, const char *pName) {
  return layer_GetDeviceProcAddr(device, pName);
}

EXPORT VKAPI_ATTR VkResult VKAPI_CALL vkNegotiateLoaderLayerInterfaceVersion(VkNegotiateLayerInterface *pVersionStruct) {
  if (!pVersionStruct || pVersionStruct->sType != LAYER_NEGOTIATE_INTERFACE_STRUCT) return VK_ERROR_INITIALIZATION_FAILED;
  if (pVersionStruct->loaderLayerInterfaceVersion < 2) return VK_ERROR_INITIALIZATION_FAILED;
  pVersionStruct->loaderLayerInterfaceVersion = 2;
  pVersionStruct->pfnGetInstanceProcAddr = layer_GetInstanceProcAddr;
  pVersionStruct->pfnGetDeviceProcAddr = layer_GetDeviceProcAddr;
  pVersionStruct->pfnGetPhysicalDeviceProcAddr = NULL;
  return VK_SUCCESS;
}
