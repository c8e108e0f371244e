/* The Vulkan pipeline cache on disk: <dir>/vk-pipelines-<cache uuid>.bin,
 * loaded at bring-up, saved at teardown. The file wraps the driver's blob in
 * a header of our own (magic, size, FNV-1a checksum); a file that is
 * missing, truncated, corrupt or from another device/driver is ignored. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vk.h"

static const char magic[8] = {'M', 'F', 'V', 'K', 'P', 'C', '0', '1'};
#define HDR_BYTES 24 /* magic, u64 size, u64 checksum */
#define MAX_BLOB ((size_t)256 << 20)

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* mkdir -p; 0 on success. */
static int make_dirs(const char *dir)
{
    size_t n = strlen(dir);
    char *d = malloc(n + 1);
    if (!d)
        return -1;
    memcpy(d, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (d[i] != '/' && d[i] != '\0')
            continue;
        char c = d[i];
        d[i] = '\0';
        if (mkdir(d, 0755) != 0 && errno != EEXIST) {
            free(d);
            return -1;
        }
        d[i] = c;
    }
    free(d);
    return 0;
}

/* The blob in a file if it is valid for this device, else NULL. */
static unsigned char *read_blob(const mf_vk *vk, const char *path,
                                size_t *bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char hdr[HDR_BYTES];
    unsigned char *blob = NULL;
    if (fread(hdr, 1, HDR_BYTES, f) != HDR_BYTES ||
        memcmp(hdr, magic, sizeof magic) != 0)
        goto bad;
    uint64_t n = get64(hdr + 8);
    if (n < 32 || n > MAX_BLOB)
        goto bad;
    blob = malloc((size_t)n);
    if (!blob || fread(blob, 1, (size_t)n, f) != n || fgetc(f) != EOF ||
        fnv1a(blob, (size_t)n) != get64(hdr + 16))
        goto bad;
    /* The Vulkan header: length, version, vendor, device, cache UUID. */
    if (get32(blob) < 32 || get32(blob) > n ||
        get32(blob + 4) != VK_PIPELINE_CACHE_HEADER_VERSION_ONE ||
        get32(blob + 8) != vk->props.vendorID ||
        get32(blob + 12) != vk->props.deviceID ||
        memcmp(blob + 16, vk->props.pipelineCacheUUID, VK_UUID_SIZE) != 0)
        goto bad;
    fclose(f);
    *bytes = (size_t)n;
    return blob;
bad:
    free(blob);
    fclose(f);
    return NULL;
}

void mf_vk_pcache_load(mf_vk *vk, const char *dir)
{
    if (dir && *dir) {
        static const char hex[] = "0123456789abcdef";
        char name[64] = "vk-pipelines-";
        size_t at = strlen(name);
        for (unsigned i = 0; i < VK_UUID_SIZE; i++) {
            name[at++] = hex[vk->props.pipelineCacheUUID[i] >> 4];
            name[at++] = hex[vk->props.pipelineCacheUUID[i] & 15];
        }
        memcpy(name + at, ".bin", 5);
        size_t n = strlen(dir) + 1 + strlen(name) + 1;
        vk->pcache_file = malloc(n);
        if (vk->pcache_file)
            snprintf(vk->pcache_file, n, "%s/%s", dir, name);
    }
    size_t bytes = 0;
    unsigned char *blob =
        vk->pcache_file ? read_blob(vk, vk->pcache_file, &bytes) : NULL;
    VkPipelineCacheCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
        .initialDataSize = blob ? bytes : 0,
        .pInitialData = blob,
    };
    if (vkCreatePipelineCache(vk->dev, &ci, NULL, &vk->pcache) != VK_SUCCESS) {
        ci.initialDataSize = 0;
        ci.pInitialData = NULL;
        if (vkCreatePipelineCache(vk->dev, &ci, NULL, &vk->pcache) !=
            VK_SUCCESS)
            vk->pcache = VK_NULL_HANDLE; /* pipelines build without one */
    }
    free(blob);
}

void mf_vk_pcache_save(mf_vk *vk)
{
    if (!vk->pcache || !vk->pcache_file)
        return;
    size_t n = 0;
    if (vkGetPipelineCacheData(vk->dev, vk->pcache, &n, NULL) != VK_SUCCESS ||
        n < 32 || n > MAX_BLOB)
        return;
    unsigned char *buf = malloc(HDR_BYTES + n);
    if (!buf)
        return;
    if (vkGetPipelineCacheData(vk->dev, vk->pcache, &n, buf + HDR_BYTES) !=
        VK_SUCCESS) {
        free(buf);
        return;
    }
    memcpy(buf, magic, sizeof magic);
    put64(buf + 8, n);
    put64(buf + 16, fnv1a(buf + HDR_BYTES, n));
    char *dir = strdup(vk->pcache_file);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    size_t tn = strlen(vk->pcache_file) + 32;
    char *tmp = malloc(tn);
    if (dir && slash && tmp) {
        *slash = '\0';
        snprintf(tmp, tn, "%s.tmp%ld", vk->pcache_file, (long)getpid());
        FILE *f = *dir && make_dirs(dir) != 0 ? NULL : fopen(tmp, "wb");
        if (f) {
            int ok = fwrite(buf, 1, HDR_BYTES + n, f) == HDR_BYTES + n;
            ok = fclose(f) == 0 && ok;
            if (!ok || rename(tmp, vk->pcache_file) != 0)
                remove(tmp);
        }
    }
    free(tmp);
    free(dir);
    free(buf);
}
