#include "gpu_common.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/dispatch/internal.h"

static char dirs[4][64];
static mf_ctx *ctxs[4];

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* The Vulkan driver (lavapipe here) keeps a few allocations past
 * vkDestroyDevice, and the loader unloads it at vkDestroyInstance, so the
 * leak check at exit could not tell its allocations from ours. Once a
 * driver is loaded, keep it (RTLD_NODELETE): its frames keep their names
 * and the suppressions below match them. */
static int pin_driver(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size, (void)arg;
    const char *n = info->dlpi_name;
    if (n && strstr(n, "libvulkan_")) {
        void *h = dlopen(n, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
        if (h)
            dlclose(h);
    }
    return 0;
}

/* LeakSanitizer (ASan builds): allocations inside the Vulkan loader and
 * driver are not moefuse's. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libvulkan_\nleak:libvulkan.so\n";
}

mf_ctx *mft_gpu_ctx(int variant)
{
    int slot = -1;
    for (int i = 0; i < 4 && slot < 0; i++)
        if (!ctxs[i])
            slot = i;
    cr_assert(slot >= 0, "too many GPU contexts at once");
    snprintf(dirs[slot], sizeof dirs[slot], "/tmp/mft-gpu-XXXXXX");
    cr_assert_not_null(mkdtemp(dirs[slot]));
    char path[128];
    snprintf(path, sizeof path, "%s/placement.json", dirs[slot]);
    mf_ctx_options o = mf_ctx_options_default();
    o.threads = 1;
    o.cache_path = path;
    if (variant == 1)
        setenv("MOEFUSE_GPU_NO_SUBGROUP", "1", 1);
    if (variant >= 2)
        setenv("MOEFUSE_GPU_IO", variant == 2 ? "copy" : "host", 1);
    mf_ctx *c = NULL;
    mf_status st = mf_ctx_create(&o, &c);
    unsetenv("MOEFUSE_GPU_NO_SUBGROUP");
    unsetenv("MOEFUSE_GPU_IO");
    cr_assert_eq(st, MF_OK, "mf_ctx_create: %s", mf_status_str(st));
    mf_status gs = mf_ctx_gpu_status(c);
    mf_gpu_info info;
    if (gs == MF_OK && variant == 1) {
        /* Without subgroup arithmetic variant 0 already ran this. */
        mf_ctx *c0 = NULL;
        o.gpu = MF_GPU_REQUIRED;
        if (mf_ctx_create(&o, &c0) == MF_OK &&
            mf_ctx_gpu_info(c0, &info) == MF_OK && !info.subgroup_arithmetic) {
            mf_ctx_destroy(c0);
            mf_ctx_destroy(c);
            remove_dir(dirs[slot]);
            return NULL;
        }
        mf_ctx_destroy(c0);
    }
    if (gs != MF_OK) {
        mf_ctx_destroy(c);
        remove_dir(dirs[slot]);
        cr_skip_test("no Vulkan device: %s", mf_status_str(gs));
    }
    dl_iterate_phdr(pin_driver, NULL);
    ctxs[slot] = c;
    return c;
}

void mft_gpu_ctx_done(mf_ctx *c)
{
    if (!c)
        return;
    for (int i = 0; i < 4; i++)
        if (ctxs[i] == c) {
            ctxs[i] = NULL;
            mf_ctx_destroy(c);
            remove_dir(dirs[i]);
        }
    const char *v = getenv("MOEFUSE_VK_VALIDATION");
    if (v && *v && strcmp(v, "0") != 0)
        cr_assert_eq(mf_gpu_validation_messages(), 0,
                     "the Vulkan validation layer reported %d messages",
                     mf_gpu_validation_messages());
}

mf_gpu *mft_gpu_of(mf_ctx *c) { return c->gpu; }

const char *mft_gpu_dir(mf_ctx *c)
{
    for (int i = 0; i < 4; i++)
        if (ctxs[i] == c)
            return dirs[i];
    return NULL;
}
