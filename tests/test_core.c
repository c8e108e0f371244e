/* Core: version, status strings, names, context options, CPU info, tensor
 * validation, f16/bf16 conversions, quantizers. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

Test(core, version)
{
    cr_expect_str_eq(mf_version(), MF_VERSION_STRING);
    cr_expect_eq(MF_VERSION_NUMBER, MF_VERSION_MAJOR * 10000 + MF_VERSION_MINOR * 100 + MF_VERSION_PATCH);
}

Test(core, status_strings)
{
    for (int s = 0; s < MF_STATUS_COUNT_; s++) {
        const char *str = mf_status_str((mf_status)s);
        cr_assert_not_null(str);
        cr_expect_str_neq(str, "unknown status", "status %d has no text", s);
    }
    cr_expect_str_eq(mf_status_str((mf_status)999), "unknown status");
    cr_expect_str_eq(mf_status_str((mf_status)-1), "unknown status");
}

Test(core, names)
{
    cr_expect_str_eq(mf_type_name(MF_TYPE_Q4_0), "q4_0");
    cr_expect_str_eq(mf_type_name((mf_type)77), "?");
    cr_expect_str_eq(mf_impl_name(MF_IMPL_UNFUSED), "unfused");
    cr_expect_str_eq(mf_impl_name((mf_impl)-3), "?");
    mf_isa isa = MF_ISA_AUTO;
    cr_expect_eq(mf_isa_parse("avx512", &isa), MF_OK);
    cr_expect_eq(isa, MF_ISA_AVX512);
    isa = MF_ISA_AVX2;
    cr_expect_eq(mf_isa_parse("sse9", &isa), MF_ERR_INVALID_ARG);
    cr_expect_eq(isa, MF_ISA_AVX2, "output changed on error");
    cr_expect_eq(mf_isa_parse(NULL, &isa), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_isa_parse("scalar", NULL), MF_ERR_INVALID_ARG);
}

Test(core, cpu_info)
{
    mf_cpu_info ci;
    cr_expect_eq(mf_cpu_info_get(NULL), MF_ERR_INVALID_ARG);
    cr_assert_eq(mf_cpu_info_get(&ci), MF_OK);
    cr_expect_geq(ci.physical_cores, 1);
    cr_expect_geq(ci.logical_cpus, ci.physical_cores);
    cr_expect(ci.isa_available[MF_ISA_SCALAR]);
    cr_expect(ci.isa_available[ci.isa_best]);
    cr_expect_neq(ci.isa_best, MF_ISA_AUTO);
}

Test(core, ctx_options_and_errors)
{
    mf_ctx *c = (mf_ctx *)0x1;
    mf_ctx_options o = mf_ctx_options_default();
    cr_expect_eq(mf_ctx_create(&o, NULL), MF_ERR_INVALID_ARG);
    o.threads = -1;
    cr_expect_eq(mf_ctx_create(&o, &c), MF_ERR_INVALID_ARG);
    cr_expect_eq(c, (mf_ctx *)0x1, "output written on error");
    o = mf_ctx_options_default();
    o.isa = (mf_isa)42;
    cr_expect_eq(mf_ctx_create(&o, &c), MF_ERR_INVALID_ARG);
    o = mf_ctx_options_default();
    o.gpu = (mf_gpu_mode)9;
    cr_expect_eq(mf_ctx_create(&o, &c), MF_ERR_INVALID_ARG);
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    for (int i = MF_ISA_SCALAR; i < MF_ISA_COUNT_; i++) {
        o = mf_ctx_options_default();
        o.isa = (mf_isa)i;
        o.gpu = MF_GPU_DISABLED;
        o.threads = 2;
        mf_status st = mf_ctx_create(&o, &c);
        if (ci.isa_available[i]) {
            cr_assert_eq(st, MF_OK, "isa %s", mf_isa_name((mf_isa)i));
            cr_expect_eq(mf_ctx_isa(c), (mf_isa)i);
            cr_expect_eq(mf_ctx_threads(c), 2);
            cr_expect_eq(mf_ctx_gpu_status(c), MF_ERR_UNSUPPORTED);
            mf_ctx_destroy(c);
            c = (mf_ctx *)0x1;
        } else {
            cr_expect_eq(st, MF_ERR_UNSUPPORTED, "isa %s", mf_isa_name((mf_isa)i));
        }
    }
    mf_ctx_destroy(NULL);
    cr_expect_eq(mf_ctx_isa(NULL), MF_ISA_SCALAR);
    cr_expect_eq(mf_ctx_threads(NULL), 1);
}

Test(core, isa_env_override)
{
    mf_ctx *c = NULL;
    mf_ctx_options o = mf_ctx_options_default();
    o.gpu = MF_GPU_DISABLED;
    setenv("MOEFUSE_ISA", "scalar", 1);
    cr_assert_eq(mf_ctx_create(&o, &c), MF_OK);
    cr_expect_eq(mf_ctx_isa(c), MF_ISA_SCALAR);
    mf_ctx_destroy(c);
    setenv("MOEFUSE_ISA", "bogus", 1);
    cr_expect_eq(mf_ctx_create(&o, &c), MF_ERR_INVALID_ARG);
    unsetenv("MOEFUSE_ISA");
}

Test(core, f16_all_values_round_trip)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mf_f16_to_f32((uint16_t)h);
        uint16_t back = mf_f32_to_f16(f);
        if (isnan(f))
            cr_assert((back & 0x7c00) == 0x7c00 && (back & 0x3ff), "NaN %04x", h);
        else
            cr_assert_eq(back, h, "f16 %04x -> %a -> %04x", h, f, back);
    }
}

/* Round-to-nearest-even against a double-precision oracle. */
static uint16_t f16_oracle(float f)
{
    if (isnan(f))
        return 0x7e00;
    double a = fabs((double)f);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (a >= 65520.0)
        return sign | 0x7c00;
    int e;
    frexp(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    int exp = e - 1; /* a in [2^exp, 2^(exp+1)) */
    if (exp < -14)
        exp = -14;
    double ulp = ldexp(1.0, exp - 10);
    double q = nearbyint(a / ulp); /* ties to even in default mode */
    double v = q * ulp;
    /* encode v */
    if (v == 0)
        return sign;
    frexp(v, &e);
    exp = e - 1;
    if (exp < -14)
        return sign | (uint16_t)(v / ldexp(1.0, -24));
    uint16_t m = (uint16_t)(v / ldexp(1.0, exp - 10) - 1024);
    return sign | (uint16_t)((exp + 15) << 10) | m;
}

Test(core, f16_rounding_random)
{
    mft_rng r = mft_rng_make(__LINE__);
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)mft_next(&r);
        float f;
        memcpy(&f, &u, 4);
        if (isnan(f))
            continue;
        cr_assert_eq(mf_f32_to_f16(f), f16_oracle(f), "%a", f);
    }
}

Test(core, bf16)
{
    cr_expect_eq(mf_f32_to_bf16(1.0f), 0x3f80);
    cr_expect_eq(mf_f32_to_bf16(1.00390625f), 0x3f80, "tie to even down");
    cr_expect_eq(mf_f32_to_bf16(1.01171875f), 0x3f82, "tie to even up");
    cr_expect(isnan(mf_bf16_to_f32(mf_f32_to_bf16(NAN))));
    cr_expect_eq(mf_bf16_to_f32(mf_f32_to_bf16(-INFINITY)), -INFINITY);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mf_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            cr_assert_eq(mf_f32_to_bf16(f), h);
    }
}

Test(core, tensor_check)
{
    static unsigned char buf[64];
    mf_tensor t = mf_tensor_dense(MF_TYPE_Q4_0, 2, 3, 64, buf);
    cr_expect_eq(mf_tensor_check(&t), MF_OK);
    cr_expect_eq(mf_tensor_row_bytes(MF_TYPE_Q4_0, 64), 36u);
    cr_expect_eq(mf_tensor_row_bytes(MF_TYPE_Q8_0, 64), 68u);
    cr_expect_eq(mf_tensor_row_bytes(MF_TYPE_MLX_Q4, 64), 32u);
    cr_expect_eq(mf_tensor_row_bytes(MF_TYPE_MLX_Q8, 64), 64u);
    cr_expect_eq(mf_tensor_row_bytes(MF_TYPE_Q4_0, 48), 0u);
    cr_expect_eq(mf_tensor_check(NULL), MF_ERR_INVALID_ARG);
    t.k = 48;
    cr_expect_eq(mf_tensor_check(&t), MF_ERR_INVALID_ARG);
    t.k = 64;
    t.row_stride = 10;
    cr_expect_eq(mf_tensor_check(&t), MF_ERR_INVALID_ARG);
    t.row_stride = 0;
    t.e = 0;
    cr_expect_eq(mf_tensor_check(&t), MF_ERR_INVALID_ARG);
    t.e = (int64_t)1 << 40;
    cr_expect_eq(mf_tensor_check(&t), MF_ERR_INVALID_ARG);
    t.e = 1;
    t.type = (mf_type)99;
    cr_expect_eq(mf_tensor_check(&t), MF_ERR_UNSUPPORTED);
    t.type = MF_TYPE_Q4_0;
    t.group_size = 64;
    cr_expect_eq(mf_tensor_check(&t), MF_ERR_INVALID_ARG, "MLX field on q4_0");
    mf_tensor m = mf_tensor_mlx(MF_TYPE_MLX_Q4, 1, 2, 128, 64, MF_TYPE_BF16, buf, buf, buf);
    cr_expect_eq(mf_tensor_check(&m), MF_OK);
    m.group_size = 48;
    cr_expect_eq(mf_tensor_check(&m), MF_ERR_UNSUPPORTED);
    m.group_size = 128;
    m.k = 64;
    cr_expect_eq(mf_tensor_check(&m), MF_ERR_INVALID_ARG);
    m.k = 128;
    m.scales = NULL;
    cr_expect_eq(mf_tensor_check(&m), MF_ERR_INVALID_ARG);
    m.scales = buf;
    m.scale_type = MF_TYPE_Q8_0;
    cr_expect_eq(mf_tensor_check(&m), MF_ERR_UNSUPPORTED);
}

/* Hand-computed blocks: Q4_0 of 0..31 scaled, Q8_0, MLX. */
Test(core, quantize_hand_blocks)
{
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16) * 0.5f; /* -8 .. 7.5, max magnitude -8 */
    unsigned char b[34];
    cr_assert_eq(mf_quantize_rows(MF_TYPE_Q4_0, x, 1, 32, b, 0, MF_TYPE_F32, NULL, NULL), MF_OK);
    uint16_t dh;
    memcpy(&dh, b, 2);
    cr_expect_eq(mf_f16_to_f32(dh), 1.0f, "d = max / -8 = -8 / -8");
    /* q = x/d + 8 = j - 8 ... element 0: x=-8 -> q=0; element 16: x=0 -> 8 */
    cr_expect_eq(b[2] & 15, 0);
    cr_expect_eq(b[2] >> 4, 8);
    cr_expect_eq(b[2 + 15] >> 4, 15, "x=7.5 rounds to 15.5 -> clamped 15");
    cr_assert_eq(mf_quantize_rows(MF_TYPE_Q8_0, x, 1, 32, b, 0, MF_TYPE_F32, NULL, NULL), MF_OK);
    memcpy(&dh, b, 2);
    cr_expect_eq(mf_f16_to_f32(dh), mf_f16_to_f32(mf_f32_to_f16(8.0f / 127.0f)));
    cr_expect_eq((int8_t)b[2], -127);
    uint32_t codes[4];
    float sc, bi;
    float y[32];
    for (int j = 0; j < 32; j++)
        y[j] = (float)j;
    cr_assert_eq(mf_quantize_rows(MF_TYPE_MLX_Q4, y, 1, 32, codes, 32, MF_TYPE_F32, &sc, &bi), MF_OK);
    cr_expect_eq(bi, 0.0f);
    cr_expect_float_eq(sc, 31.0f / 15.0f, 1e-6);
    cr_expect_eq(codes[0] & 15u, 0u, "element 0 lowest bits");
    cr_expect_eq((codes[3] >> 28) & 15u, 15u, "element 31 highest bits of word 3");
    cr_expect_eq(mf_quantize_rows(MF_TYPE_F32, y, 1, 32, codes, 0, MF_TYPE_F32, NULL, NULL), MF_ERR_UNSUPPORTED);
    cr_expect_eq(mf_quantize_rows(MF_TYPE_Q4_0, y, 1, 31, codes, 0, MF_TYPE_F32, NULL, NULL), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_quantize_rows(MF_TYPE_MLX_Q4, y, 1, 32, codes, 32, MF_TYPE_F32, NULL, &bi), MF_ERR_INVALID_ARG);
}

/* ------------------------------------------------------------ thread pool */

#include <stdatomic.h>
#include <unistd.h>

#include "src/dispatch/pool.h"

typedef struct pool_probe {
    _Atomic int hits[64];
    int n_seen; /* the n every task saw must be the run's */
    _Atomic int bad_n;
} pool_probe;

static void pool_task(void *arg, int i, int n)
{
    pool_probe *pr = arg;
    if (n != pr->n_seen)
        atomic_fetch_add(&pr->bad_n, 1);
    atomic_fetch_add(&pr->hits[i], 1);
}

/* Many runs of varying width on an oversubscribed pool (more threads than
 * cores, so workers wake late and miss runs): every task of every run runs
 * exactly once, with that run's n, and nothing else runs. */
Test(pool, each_task_once_per_run)
{
    const int threads = 6;
    mf_pool *p;
    cr_assert_eq(mf_pool_create(threads, 0, &p), MF_OK);
    uint64_t s = mft_seed();
    for (int r = 0; r < 2000; r++) {
        pool_probe pr;
        memset(&pr, 0, sizeof pr);
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int n = 1 + (int)((s >> 33) % (uint64_t)threads);
        pr.n_seen = n;
        mf_pool_run(p, n, pool_task, &pr);
        for (int i = 0; i < threads; i++)
            if (atomic_load(&pr.hits[i]) != (i < n)) {
                cr_assert_fail("run %d (n = %d): task %d ran %d times", r, n, i,
                               atomic_load(&pr.hits[i]));
            }
        cr_assert_eq(atomic_load(&pr.bad_n), 0, "run %d: a task saw another run's n", r);
        if (r % 250 == 249) /* let the workers fall asleep now and then */
            usleep(300);
    }
    mf_pool_destroy(p);
}
