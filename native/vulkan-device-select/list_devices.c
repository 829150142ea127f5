/*
 * Lists the Vulkan physical devices and device groups a process sees, and creates then destroys a logical device
 * on each listed device (which exercises a layer's vkCreateDevice / vkGetDeviceProcAddr / vkDestroyDevice path).
 * Used by test/engine/runtime/gpu-pinning.test.ts to check VK_LAYER_TCD_device_select.
 *
 * Output, one fact per line (parsed by the test):
 *   devices 1
 *   device 0 llvmpipe (LLVM 15.0.6, 256 bits)
 *   uuid 6d657361-3232-2e33-2e36-000000000000  (Vulkan 1.1 devices, without --khr)
 *   incomplete 1            (only when >= 1 device: asking for 0 into an array gave VK_INCOMPLETE)
 *   groups 1
 *   group 0 size 1 listed 1  (listed: its members are among the devices above)
 *   created 0               (logical device created on device 0)
 * With --khr the instance is Vulkan 1.0 with VK_KHR_device_group_creation and groups come from
 * vkEnumeratePhysicalDeviceGroupsKHR (the extension alias a layer must filter too).
 * With --hold MIB SECONDS it allocates MIB of device-local memory on device 0 and sleeps, so `nvidia-smi
 * --query-gpu=index,uuid,memory.used --format=csv` shows which GPU the process holds.
 * Each device line is followed by "uuid <deviceUUID>" (NVIDIA: the GPU-... UUID nvidia-smi prints).
 * Build: gcc -O2 -o list_devices list_devices.c -lvulkan
 */
#include <vulkan/vulkan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what, VkResult r) {
  fprintf(stderr, "list_devices: %s failed: VkResult %d\n", what, (int)r);
  return 1;
}

int main(int argc, char **argv) {
  int khr = 0;
  unsigned long hold_mib = 0, hold_s = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--khr")) khr = 1;
    else if (!strcmp(argv[i], "--hold") && i + 2 < argc) { hold_mib = strtoul(argv[i + 1], NULL, 10); hold_s = strtoul(argv[i + 2], NULL, 10); i += 2; }
    else { fprintf(stderr, "usage: list_devices [--khr] [--hold MIB SECONDS]\n"); return 2; }
  }
  const char *exts[] = {VK_KHR_DEVICE_GROUP_CREATION_EXTENSION_NAME, VK_KHR_GET_PHYSICAL_DEVICE_PROPERTIES_2_EXTENSION_NAME};
  VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "tcd-list-devices",
                           .apiVersion = khr ? VK_API_VERSION_1_0 : VK_API_VERSION_1_1};
  VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app,
                             .enabledExtensionCount = khr ? 2 : 0, .ppEnabledExtensionNames = exts};
  VkInstance inst;
  VkResult r = vkCreateInstance(&ci, NULL, &inst);
  if (r != VK_SUCCESS) return fail("vkCreateInstance", r);

  uint32_t n = 0;
  if ((r = vkEnumeratePhysicalDevices(inst, &n, NULL)) != VK_SUCCESS) return fail("vkEnumeratePhysicalDevices(count)", r);
  VkPhysicalDevice *devs = calloc(n + 1, sizeof *devs);
  if ((r = vkEnumeratePhysicalDevices(inst, &n, devs)) != VK_SUCCESS) return fail("vkEnumeratePhysicalDevices(list)", r);
  printf("devices %u\n", n);
  for (uint32_t i = 0; i < n; i++) {
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(devs[i], &p);
    printf("device %u %s\n", i, p.deviceName);
    if (p.apiVersion >= VK_API_VERSION_1_1 && !khr) {
      VkPhysicalDeviceIDProperties id = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES};
      VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &id};
      vkGetPhysicalDeviceProperties2(devs[i], &p2);
      const uint8_t *u = id.deviceUUID;
      printf("uuid %02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x\n", u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
             u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    }
  }

  if (n > 0) {
    /* the two-call idiom with a short array must say VK_INCOMPLETE and report what it wrote */
    uint32_t zero = 0;
    VkPhysicalDevice dummy;
    r = vkEnumeratePhysicalDevices(inst, &zero, &dummy);
    printf("incomplete %d\n", r == VK_INCOMPLETE && zero == 0);
  }

  PFN_vkEnumeratePhysicalDeviceGroups enum_groups = khr
      ? (PFN_vkEnumeratePhysicalDeviceGroups)vkGetInstanceProcAddr(inst, "vkEnumeratePhysicalDeviceGroupsKHR")
      : vkEnumeratePhysicalDeviceGroups;
  if (!enum_groups) return fail("vkGetInstanceProcAddr(vkEnumeratePhysicalDeviceGroupsKHR)", VK_ERROR_EXTENSION_NOT_PRESENT);
  uint32_t g = 0;
  if ((r = enum_groups(inst, &g, NULL)) != VK_SUCCESS) return fail("vkEnumeratePhysicalDeviceGroups(count)", r);
  VkPhysicalDeviceGroupProperties *groups = calloc(g + 1, sizeof *groups);
  for (uint32_t i = 0; i < g; i++) groups[i].sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_GROUP_PROPERTIES;
  if ((r = enum_groups(inst, &g, groups)) != VK_SUCCESS) return fail("vkEnumeratePhysicalDeviceGroups(list)", r);
  printf("groups%s %u\n", khr ? " (khr)" : "", g);
  for (uint32_t i = 0; i < g; i++) {
    /* "listed 1": every member of the group is one of the devices vkEnumeratePhysicalDevices returned */
    int listed = 1;
    for (uint32_t j = 0; j < groups[i].physicalDeviceCount; j++) {
      int found = 0;
      for (uint32_t k = 0; k < n; k++) found |= groups[i].physicalDevices[j] == devs[k];
      listed &= found;
    }
    printf("group %u size %u listed %d\n", i, groups[i].physicalDeviceCount, listed);
  }

  for (uint32_t i = 0; i < n; i++) {
    float prio = 1.0f;
    VkDeviceQueueCreateInfo q = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = 0, .queueCount = 1, .pQueuePriorities = &prio};
    VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &q};
    VkDevice dev;
    if ((r = vkCreateDevice(devs[i], &dci, NULL, &dev)) != VK_SUCCESS) return fail("vkCreateDevice", r);
    VkQueue queue = VK_NULL_HANDLE;
    vkGetDeviceQueue(dev, 0, 0, &queue);
    if (vkDeviceWaitIdle(dev) != VK_SUCCESS || !queue) return fail("vkDeviceWaitIdle", r);
    vkDestroyDevice(dev, NULL);
    printf("created %u\n", i);
  }

  if (hold_mib && n > 0) {
    /* a logical device holding MIB of device-local memory on device 0, kept for SECONDS */
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(devs[0], &mp);
    uint32_t type = UINT32_MAX;
    for (uint32_t t = 0; t < mp.memoryTypeCount && type == UINT32_MAX; t++)
      if (mp.memoryTypes[t].propertyFlags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) type = t;
    if (type == UINT32_MAX) return fail("finding device-local memory", VK_ERROR_FEATURE_NOT_PRESENT);
    float prio = 1.0f;
    VkDeviceQueueCreateInfo q = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = 0, .queueCount = 1, .pQueuePriorities = &prio};
    VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1, .pQueueCreateInfos = &q};
    VkDevice dev;
    if ((r = vkCreateDevice(devs[0], &dci, NULL, &dev)) != VK_SUCCESS) return fail("vkCreateDevice", r);
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = (VkDeviceSize)hold_mib << 20, .memoryTypeIndex = type};
    VkDeviceMemory mem;
    if ((r = vkAllocateMemory(dev, &ai, NULL, &mem)) != VK_SUCCESS) return fail("vkAllocateMemory", r);
    printf("holding %lu MiB on device 0 for %lu s (pid %d)\n", hold_mib, hold_s, (int)getpid());
    fflush(stdout);
    sleep((unsigned)hold_s);
    vkFreeMemory(dev, mem, NULL);
    vkDestroyDevice(dev, NULL);
  }

  free(groups);
  free(devs);
  vkDestroyInstance(inst, NULL);
  return 0;
}
