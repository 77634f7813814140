/* The one piece of kvcache_config_library.h written in C: dladdr, which glibc declares only under
 * _GNU_SOURCE (not in Swift's Glibc module). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include "kvcache_config_library.h"

const char *kvcc_image_path(void) {
    Dl_info info;
    if (dladdr((const void *)&kvcc_image_path, &info) == 0) return NULL;
    return info.dli_fname;
}
