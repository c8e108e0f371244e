/* The Vulkan runtime around the ops: no loader/driver, no matching device,
 * injected device OOM and device loss (the context keeps working on the
 * CPU, outputs untouched on error, nothing leaks under ASan), device
 * selection by index/name/UUID, mf_ctx_gpu_info, the pipeline cache file
 * (written, corrupt or truncated files ignored), the benchmark helpers and
 * the validation-message counter. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "gpu_common.h"
#include "mf_config.h"

#if MF_HAVE_VULKAN
#include "src/gpu/gpu_internal.h"
#endif

/* What a context without a usable device reports in this build. */
static mf_status no_device_status(void)
{
    return MF_HAVE_VULKAN ? MF_ERR_DEVICE : MF_ERR_UNSUPPORTED;
}

static mf_ctx *plain_ctx(mf_gpu_mode mode)
{
    mf_ctx_options o = mf_ctx_options_default();
    o.threads = 1;
    o.gpu = mode;
    o.cache_path = "/nonexistent-moefuse-dir/placement.json";
    mf_ctx *c = NULL;
    cr_assert_eq(mf_ctx_create(&o, &c), MF_OK);
    return c;
}

/* A gating call on impl against the reference; 1 if it matched. */
static int gating_ok(mf_ctx *c, mf_impl impl)
{
    float x[3 * 16];
    for (int i = 0; i < 48; i++)
        x[i] = sinf((float)i * 0.7f);
    int32_t ir[6], ii[6];
    float wr[6], wi[6];
    mf_gating_desc d = {.impl = MF_IMPL_REF, .n_experts = 16, .k = 2,
                        .renormalize = 1};
    if (mf_gating(c, &d, x, 3, ir, wr) != MF_OK)
        return 0;
    d.impl = impl;
    if (mf_gating(c, &d, x, 3, ii, wi) != MF_OK)
        return 0;
    for (int i = 0; i < 6; i++)
        if (ii[i] != ir[i] || !mft_close(wr[i], wi[i], 4, 1e-7f))
            return 0;
    return 1;
}

/* A machine without a Vulkan driver: the loader finds no ICD. */
Test(gpu, no_driver)
{
    setenv("VK_ICD_FILENAMES", "/nonexistent/moefuse_icd.json", 1);
    setenv("VK_DRIVER_FILES", "/nonexistent/moefuse_icd.json", 1);
    unsetenv("VK_ADD_DRIVER_FILES");
    mf_ctx_options o = mf_ctx_options_default();
    mf_gpu *g = (mf_gpu *)0x1;
    cr_expect_eq(mf_gpu_create(&o, &g), no_device_status());
    cr_expect_eq(g, (mf_gpu *)0x1, "output written on error");
    mf_ctx *c = plain_ctx(MF_GPU_AUTO);
    cr_expect_eq(mf_ctx_gpu_status(c), no_device_status());
    mf_gpu_info info;
    memset(&info, 0x5a, sizeof info);
    cr_expect_eq(mf_ctx_gpu_info(c, &info), no_device_status());
    cr_expect_eq(info.vendor_id, 0x5a5a5a5au, "info written on error");
    cr_expect(gating_ok(c, MF_IMPL_AUTO), "CPU-only context does not work");
    int32_t idx[2];
    float w[2], x[4] = {1, 2, 3, 4};
    mf_gating_desc d = {.impl = MF_IMPL_GPU, .n_experts = 4, .k = 2};
    cr_expect_eq(mf_gating(c, &d, x, 1, idx, w), MF_ERR_UNSUPPORTED);
    mf_ctx_destroy(c);
    c = (mf_ctx *)0x1;
    o.gpu = MF_GPU_REQUIRED;
    cr_expect_eq(mf_ctx_create(&o, &c), MF_ERR_DEVICE);
    cr_expect_eq(c, (mf_ctx *)0x1, "output written on error");
}

/* Options that match no device, and MOEFUSE_GPU_FAULT=create (a device
 * without a required feature). */
Test(gpu, no_matching_device)
{
    mf_ctx *probe = mft_gpu_ctx(0);
    mft_gpu_ctx_done(probe);
    struct {
        int index;
        const char *name, *uuid;
    } cases[] = {
        {-1, "no-such-gpu-name-42", NULL},
        {63, NULL, NULL},
        {-1, NULL, "0123"},
        {-1, NULL, "zz000000000000000000000000000000"},
        {-1, NULL, "00000000000000000000000000000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mf_ctx_options o = mf_ctx_options_default();
        o.threads = 1;
        o.gpu_index = cases[i].index;
        o.gpu_name = cases[i].name;
        o.gpu_uuid = cases[i].uuid;
        mf_ctx *c = NULL;
        cr_assert_eq(mf_ctx_create(&o, &c), MF_OK);
        cr_expect_eq(mf_ctx_gpu_status(c), MF_ERR_DEVICE, "case %zu", i);
        cr_expect(gating_ok(c, MF_IMPL_AUTO));
        mf_ctx_destroy(c);
        o.gpu = MF_GPU_REQUIRED;
        c = (mf_ctx *)0x1;
        cr_expect_eq(mf_ctx_create(&o, &c), MF_ERR_DEVICE, "case %zu", i);
        cr_expect_eq(c, (mf_ctx *)0x1);
    }
    setenv("MOEFUSE_GPU_FAULT", "create", 1);
    mf_ctx *c = plain_ctx(MF_GPU_AUTO);
    unsetenv("MOEFUSE_GPU_FAULT");
    cr_expect_eq(mf_ctx_gpu_status(c), MF_ERR_DEVICE);
    cr_expect(gating_ok(c, MF_IMPL_AUTO));
    mf_ctx_destroy(c);
}

/* The device found again by its index, a substring of its name and its
 * UUID; mf_ctx_gpu_info's fields and errors. */
Test(gpu, select_and_info)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mf_gpu_info info;
    cr_assert_eq(mf_ctx_gpu_info(c, &info), MF_OK);
    cr_expect_gt(strlen(info.name), 0);
    cr_expect_eq(strlen(info.uuid), 32);
    cr_expect_eq(strspn(info.uuid, "0123456789abcdef"), 32);
    cr_expect_geq(info.api_version, (1u << 22) | (1u << 12), "below 1.1");
    cr_expect_geq(info.subgroup_size, 1);
    cr_expect_gt(info.shared_memory_bytes, 0);
    cr_expect(info.type >= MF_GPU_TYPE_OTHER && info.type <= MF_GPU_TYPE_CPU);
    cr_expect(info.zero_copy == 0 || info.zero_copy == 1);
    cr_expect_eq(mf_ctx_gpu_info(NULL, &info), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_ctx_gpu_info(c, NULL), MF_ERR_INVALID_ARG);
    mf_ctx *off = plain_ctx(MF_GPU_DISABLED);
    mf_gpu_info junk;
    memset(&junk, 0x33, sizeof junk);
    cr_expect_eq(mf_ctx_gpu_info(off, &junk), MF_ERR_UNSUPPORTED);
    cr_expect_eq(junk.device_id, 0x33333333u, "info written on error");
    mf_ctx_destroy(off);

    char name[64];
    snprintf(name, sizeof name, "%.8s", info.name);
    char upper[40];
    for (int i = 0; i < 33; i++)
        upper[i] = (char)(info.uuid[i] >= 'a' ? info.uuid[i] - 32 : info.uuid[i]);
    char dashed[48];
    snprintf(dashed, sizeof dashed, "%.8s-%.4s-%.4s-%.4s-%.12s", info.uuid,
             info.uuid + 8, info.uuid + 12, info.uuid + 16, info.uuid + 20);
    struct {
        int index;
        const char *name, *uuid;
    } cases[] = {{-1, name, NULL}, {-1, NULL, info.uuid}, {-1, NULL, upper},
                 {-1, NULL, dashed}, {-1, name, info.uuid}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mf_ctx_options o = mf_ctx_options_default();
        o.threads = 1;
        o.gpu = MF_GPU_REQUIRED;
        o.gpu_index = cases[i].index;
        o.gpu_name = cases[i].name;
        o.gpu_uuid = cases[i].uuid;
        mf_ctx *c2 = NULL;
        cr_assert_eq(mf_ctx_create(&o, &c2), MF_OK, "case %zu", i);
        mf_gpu_info i2;
        cr_assert_eq(mf_ctx_gpu_info(c2, &i2), MF_OK);
        cr_expect_str_eq(i2.uuid, info.uuid, "case %zu", i);
        mf_ctx_destroy(c2);
    }
    /* some index reaches the same device */
    int found = 0;
    for (int i = 0; i < 16 && !found; i++) {
        mf_ctx_options o = mf_ctx_options_default();
        o.threads = 1;
        o.gpu_index = i;
        mf_ctx *c2 = NULL;
        cr_assert_eq(mf_ctx_create(&o, &c2), MF_OK);
        mf_gpu_info i2;
        found = mf_ctx_gpu_info(c2, &i2) == MF_OK &&
                strcmp(i2.uuid, info.uuid) == 0;
        mf_ctx_destroy(c2);
    }
    cr_expect(found, "no gpu_index selects the device");
    mft_gpu_ctx_done(c);
}

/* Device memory exhausted: the call fails with MF_ERR_DEVICE_OOM, outputs
 * untouched; the next call works; AUTO calls are unaffected. */
Test(gpu, device_oom)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mf_gpu_inject_fault(mft_gpu_of(c), MF_GPU_FAULT_OOM);
    float x[64], w[2] = {0.25f, 0.75f}, out[32];
    for (int i = 0; i < 64; i++)
        x[i] = (float)i;
    for (int i = 0; i < 32; i++)
        out[i] = -1.0f;
    mf_combine_desc d = {.impl = MF_IMPL_GPU, .exact = 1};
    cr_expect_eq(mf_combine(c, &d, 1, 2, 32, x, w, NULL, out),
                 MF_ERR_DEVICE_OOM);
    for (int i = 0; i < 32; i++)
        cr_assert_eq(out[i], -1.0f, "output written on error");
    cr_expect_eq(mf_ctx_gpu_status(c), MF_OK);
    cr_expect_eq(mf_combine(c, &d, 1, 2, 32, x, w, NULL, out), MF_OK);
    for (int i = 0; i < 32; i++)
        cr_expect_eq(out[i], 0.25f * (float)i + 0.75f * (float)(32 + i));
    cr_expect(gating_ok(c, MF_IMPL_GPU));
    mft_gpu_ctx_done(c);

    setenv("MOEFUSE_GPU_FAULT", "oom", 1);
    c = mft_gpu_ctx(0);
    unsetenv("MOEFUSE_GPU_FAULT");
    cr_expect(!gating_ok(c, MF_IMPL_GPU), "the armed fault did not fire");
    cr_expect(gating_ok(c, MF_IMPL_AUTO));
    cr_expect(gating_ok(c, MF_IMPL_GPU));
    mft_gpu_ctx_done(c);
}

/* The device is lost: every GPU call reports it from then on (outputs
 * untouched), the context's status says so, CPU and AUTO calls keep
 * working, and destroying the context releases everything. */
static void after_loss(mf_ctx *c)
{
    cr_expect_eq(mf_ctx_gpu_status(c), MF_ERR_DEVICE_LOST);
    mf_gpu_info info;
    cr_expect_eq(mf_ctx_gpu_info(c, &info), MF_ERR_DEVICE_LOST);
    int32_t idx[4] = {-7, -7, -7, -7};
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, w[4] = {-7, -7, -7, -7};
    mf_gating_desc d = {.impl = MF_IMPL_GPU, .n_experts = 4, .k = 2};
    cr_expect_eq(mf_gating(c, &d, x, 2, idx, w), MF_ERR_DEVICE_LOST);
    for (int i = 0; i < 4; i++)
        cr_expect(idx[i] == -7 && w[i] == -7.0f, "output written on error");
    float out[4] = {-7, -7, -7, -7};
    mf_glu_desc gd = {.impl = MF_IMPL_GPU};
    cr_expect_eq(mf_glu(c, &gd, 1, 4, x, x + 4, out), MF_ERR_DEVICE_LOST);
    cr_expect_eq(out[0], -7.0f);
    mf_gpu_timing t;
    cr_expect_eq(mf_gpu_bench_empty(mft_gpu_of(c), &t), MF_ERR_DEVICE_LOST);
    cr_expect(gating_ok(c, MF_IMPL_AUTO), "AUTO after the loss");
    cr_expect(gating_ok(c, MF_IMPL_CPU), "CPU after the loss");
}

Test(gpu, device_lost)
{
    mf_ctx *c = mft_gpu_ctx(0);
    cr_expect(gating_ok(c, MF_IMPL_GPU));
    mf_gpu_inject_fault(mft_gpu_of(c), MF_GPU_FAULT_LOST);
    int32_t idx[4] = {-7, -7, -7, -7};
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, w[4] = {-7, -7, -7, -7};
    mf_gating_desc d = {.impl = MF_IMPL_GPU, .n_experts = 4, .k = 2};
    cr_expect_eq(mf_gating(c, &d, x, 2, idx, w), MF_ERR_DEVICE_LOST);
    for (int i = 0; i < 4; i++)
        cr_expect(idx[i] == -7 && w[i] == -7.0f, "output written on error");
    after_loss(c);
    mft_gpu_ctx_done(c);

    setenv("MOEFUSE_GPU_FAULT", "lost", 1);
    c = mft_gpu_ctx(0);
    unsetenv("MOEFUSE_GPU_FAULT");
    cr_expect_eq(mf_ctx_gpu_status(c), MF_OK);
    cr_expect(!gating_ok(c, MF_IMPL_GPU), "the armed fault did not fire");
    after_loss(c);
    mft_gpu_ctx_done(c);
}

/* ------------------------------------------------------- pipeline cache */

static char *cache_file(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls %s/vk-pipelines-*.bin 2>/dev/null", dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    static char line[512];
    char *r = fgets(line, sizeof line, p);
    pclose(p);
    if (!r)
        return NULL;
    line[strcspn(line, "\n")] = '\0';
    return line;
}

static void run_with_cache(const char *path)
{
    mf_ctx_options o = mf_ctx_options_default();
    o.threads = 1;
    o.gpu = MF_GPU_REQUIRED;
    o.cache_path = path;
    mf_ctx *c = NULL;
    cr_assert_eq(mf_ctx_create(&o, &c), MF_OK, "create with a bad cache");
    cr_expect(gating_ok(c, MF_IMPL_GPU));
    mf_ctx_destroy(c);
}

static void check_file(const char *dir)
{
    char *f = cache_file(dir);
    cr_assert_not_null(f, "no pipeline cache file in %s", dir);
    FILE *fp = fopen(f, "rb");
    cr_assert_not_null(fp);
    char magic[8];
    cr_expect_eq(fread(magic, 1, 8, fp), 8);
    cr_expect_eq(memcmp(magic, "MFVKPC01", 8), 0, "bad magic");
    fseek(fp, 0, SEEK_END);
    cr_expect_geq(ftell(fp), 24 + 32);
    fclose(fp);
}

Test(gpu, pipeline_cache)
{
    mf_ctx *probe = mft_gpu_ctx(0);
    mft_gpu_ctx_done(probe);
    char dir[64] = "/tmp/mft-pcache-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char sub[128], path[160];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    snprintf(path, sizeof path, "%s/placement.json", sub);
    /* written at destroy, directories created */
    run_with_cache(path);
    check_file(sub);
    char *f = cache_file(sub);
    char file[512];
    snprintf(file, sizeof file, "%s", f);
    /* corrupt payload byte, truncated, garbage, empty: ignored, rewritten */
    for (int mode = 0; mode < 4; mode++) {
        FILE *fp = fopen(file, "r+b");
        cr_assert_not_null(fp);
        if (mode == 0) {
            fseek(fp, 30, SEEK_SET);
            int ch = fgetc(fp);
            fseek(fp, 30, SEEK_SET);
            fputc(ch ^ 0x40, fp);
            fclose(fp);
        } else {
            fclose(fp);
            fp = fopen(file, "wb");
            if (mode == 1)
                fwrite("MFVKPC01\x40\0\0\0", 1, 12, fp);
            else if (mode == 2)
                for (int i = 0; i < 4096; i++)
                    fputc((i * 131) & 255, fp);
            fclose(fp);
        }
        run_with_cache(path);
        check_file(sub);
    }
    /* the default place: $XDG_CACHE_HOME/moefuse */
    char xdg[128];
    snprintf(xdg, sizeof xdg, "%s/xdg", dir);
    setenv("XDG_CACHE_HOME", xdg, 1);
    mf_ctx_options o = mf_ctx_options_default();
    o.threads = 1;
    o.gpu = MF_GPU_REQUIRED;
    mf_ctx *c = NULL;
    cr_assert_eq(mf_ctx_create(&o, &c), MF_OK);
    mf_ctx_destroy(c);
    unsetenv("XDG_CACHE_HOME");
    char def[160];
    snprintf(def, sizeof def, "%s/moefuse", xdg);
    check_file(def);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

/* ------------------------------------------------------------- benchmark */

Test(gpu, bench_helpers)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mf_gpu *g = mft_gpu_of(c);
    mf_gpu_timing t = {-5, -5};
    cr_expect_eq(mf_gpu_bench_empty(NULL, &t), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_gpu_bench_empty(g, NULL), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_gpu_bench_copy(g, MF_GPU_COPY_ENGINE, 0, &t), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_gpu_bench_copy(g, MF_GPU_COPY_SHADER, 15, &t), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_gpu_bench_copy(g, MF_GPU_COPY_KINDS_, 64, &t), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_gpu_bench_replay(g, MF_GPU_OP_COUNT_, &t),
                 MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_gpu_bench_replay(g, MF_GPU_OP_GATING, &t),
                 MF_ERR_INVALID_ARG, "replay before any gating call");
    cr_expect_eq(t.host_us, -5, "timing written on error");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(mf_gpu_bench_empty(g, &t), MF_OK);
        cr_expect_gt(t.host_us, 0);
        cr_expect(t.gpu_us == -1.0 || t.gpu_us >= 0);
    }
    for (size_t bytes = 16; bytes <= (1u << 22); bytes <<= 9)
        for (int k = 0; k < MF_GPU_COPY_KINDS_; k++) {
            cr_assert_eq(mf_gpu_bench_copy(g, (mf_gpu_copy_kind)k, bytes, &t), MF_OK);
            cr_expect_gt(t.host_us, 0);
        }
#if MF_HAVE_VULKAN
    /* the floors measure real work: both copies copy every word (odd word
     * counts and more words than invocations included), the read pass
     * writes nothing */
    static const size_t sizes[] = {16 * 3, 16 * 1001, (size_t)16 * 70000 * 19};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t bytes = sizes[si];
        uint32_t *src = malloc(bytes), *dst = malloc(bytes), *zero = calloc(1, bytes);
        cr_assert(src && dst && zero);
        for (size_t i = 0; i < bytes / 4; i++)
            src[i] = (uint32_t)(i * 2654435761u + si);
        cr_assert_eq(mf_gpu_bench_copy(g, MF_GPU_COPY_READ, bytes, &t), MF_OK);
        cr_assert_eq(mf_vk_upload(&g->vk, &g->copy_src, 0, src, bytes), MF_OK);
        for (int k = 0; k < MF_GPU_COPY_KINDS_; k++) {
            cr_assert_eq(mf_vk_upload(&g->vk, &g->copy_dst, 0, zero, bytes), MF_OK);
            cr_assert_eq(mf_gpu_bench_copy(g, (mf_gpu_copy_kind)k, bytes, &t), MF_OK);
            cr_assert_eq(mf_vk_download(&g->vk, &g->copy_dst, 0, dst, bytes), MF_OK);
            cr_expect_eq(memcmp(dst, k == MF_GPU_COPY_READ ? zero : src, bytes), 0,
                         "copy kind %d, %zu bytes", k, bytes);
        }
        free(src);
        free(dst);
        free(zero);
    }
#endif
    cr_expect(gating_ok(c, MF_IMPL_GPU));
    cr_assert_eq(mf_gpu_bench_replay(g, MF_GPU_OP_GATING, &t), MF_OK);
    cr_expect_gt(t.host_us, 0);
    /* a call too big for the plan budget is not kept */
    const int64_t D = 1 << 21;
    float *x = calloc((size_t)D * 9, sizeof(float));
    cr_assert_not_null(x);
    float w[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    mf_combine_desc d = {.impl = MF_IMPL_GPU};
    cr_assert_eq(mf_combine(c, &d, 1, 8, D, x, w, NULL, x + 8 * D), MF_OK);
    cr_expect_eq(mf_gpu_bench_replay(g, MF_GPU_OP_COMBINE, &t),
                 MF_ERR_INVALID_ARG, "a 64 MiB plan was kept");
    cr_assert_eq(mf_combine(c, &d, 1, 8, 64, x, w, NULL, x + 8 * D), MF_OK);
    cr_expect_eq(mf_gpu_bench_replay(g, MF_GPU_OP_COMBINE, &t), MF_OK);
    free(x);
    mft_gpu_ctx_done(c);
}

/* ------------------------------------------------------------ validation */

#if MF_HAVE_VULKAN
/* The counter behind MOEFUSE_VK_VALIDATION=1 counts: an invalid call (a
 * zero-sized buffer) must raise it. Runs only with validation on. */
Test(gpu, validation_counts)
{
    const char *v = getenv("MOEFUSE_VK_VALIDATION");
    if (!v || !*v || strcmp(v, "0") == 0)
        cr_skip_test("MOEFUSE_VK_VALIDATION is not set");
    mf_ctx_options o = mf_ctx_options_default();
    o.threads = 1;
    o.cache_path = "/nonexistent-moefuse-dir/placement.json";
    mf_ctx *c = NULL;
    cr_assert_eq(mf_ctx_create(&o, &c), MF_OK);
    if (mf_ctx_gpu_status(c) != MF_OK) {
        mf_ctx_destroy(c);
        cr_skip_test("no Vulkan device");
    }
    mf_vk *vk = &mft_gpu_of(c)->vk;
    int before = mf_gpu_validation_messages();
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .size = 0,
                             .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT};
    VkBuffer b = VK_NULL_HANDLE;
    if (vkCreateBuffer(vk->dev, &bi, NULL, &b) == VK_SUCCESS && b)
        vkDestroyBuffer(vk->dev, b, NULL);
    cr_expect_gt(mf_gpu_validation_messages(), before,
                 "the validation layer's message was not counted");
    mf_ctx_destroy(c);
}
#endif
