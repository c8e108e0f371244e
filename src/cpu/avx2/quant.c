/* AVX2+FMA+F16C quantized-weight kernels: row dequantization (bit-exact),
 * f32 dot products against quantized rows (EXACT), activation quantization
 * to int8 blocks and integer block dot products (INT8).
 *
 * qdot and qdot_q8 stream each row once for up to four activation rows:
 * rows are taken in blocks (4 rows for M = 1, else 2) and, inside a row
 * block, activation rows in chunks of up to 4, so the block's weights are
 * re-read from L1 rather than from memory. Weights are decoded in registers
 * per 32-element piece (one ggml block, or a slice of an MLX group). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "avx2.h"

#define AI static inline __attribute__((always_inline))

static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

AI uint16_t ld16(const unsigned char *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

AI uint32_t ld32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static size_t row_stride(const mf_tensor *w)
{
    return w->row_stride ? w->row_stride : mf_tensor_row_bytes(w->type, w->k);
}

static int is_mlx(mf_type t)
{
    return t == MF_TYPE_MLX_Q4 || t == MF_TYPE_MLX_Q8;
}

/* log2(group_size / 32): the 32-wide piece j of a row is in group j >> gsh. */
static int group_shift(const mf_tensor *w)
{
    return w->group_size == 128 ? 2 : w->group_size == 64 ? 1 : 0;
}

static size_t param_size(mf_type st) { return st == MF_TYPE_F32 ? 4 : 2; }

/* One MLX scale or bias (element i of arr), widened exactly, broadcast. */
AI __m256 mlx_param(mf_type st, const unsigned char *arr, size_t i)
{
    if (st == MF_TYPE_F32) {
        float f;
        memcpy(&f, arr + i * 4, 4);
        return _mm256_set1_ps(f);
    }
    uint16_t h = ld16(arr + i * 2);
    if (st == MF_TYPE_F16)
        return _mm256_cvtph_ps(_mm_set1_epi16((short)h));
    return _mm256_castsi256_ps(_mm256_set1_epi32((int)((uint32_t)h << 16)));
}

/* ggml block scale d (f16) broadcast. */
AI __m256 f16_bcast(const unsigned char *p)
{
    return _mm256_cvtph_ps(_mm_set1_epi16((short)ld16(p)));
}

AI float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
                          _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 f16 values to f32, bit for bit as mf_f16_to_f32 (F16C quiets signaling
 * NaNs; the format keeps the payload as it is). */
AI __m256 f16x8_exact(__m128i h)
{
    __m256 f = _mm256_cvtph_ps(h);
    __m256i u = _mm256_cvtepu16_epi32(h);
    __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fff));
    __m256i nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7c00));
    if (_mm256_testz_si256(nan, nan))
        return f;
    __m256i bits = _mm256_or_si256(
        _mm256_slli_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x8000)), 16),
        _mm256_or_si256(_mm256_set1_epi32(0x7f800000),
                        _mm256_slli_epi32(
                            _mm256_and_si256(u, _mm256_set1_epi32(0x3ff)),
                            13)));
    return _mm256_blendv_ps(f, _mm256_castsi256_ps(bits),
                            _mm256_castsi256_ps(nan));
}

/* ------------------------------------------------------------ dequant -- */

/* Elements [32j, 32j + 32) of row r (whose bytes start at row) of a
 * quantized tensor, exactly as the format defines them. */
static void dequant_piece(const mf_tensor *w, int64_t r,
                          const unsigned char *row, int64_t j, float *out)
{
    switch (w->type) {
    case MF_TYPE_Q4_0: {
        const unsigned char *p = row + j * 18;
        const __m256i m15 = _mm256_set1_epi32(15), c8 = _mm256_set1_epi32(8);
        __m256 d = f16_bcast(p);
        for (int h = 0; h < 2; h++) {
            __m256i v = _mm256_cvtepu8_epi32(
                _mm_loadl_epi64((const __m128i *)(p + 2 + 8 * h)));
            __m256i lo = _mm256_sub_epi32(_mm256_and_si256(v, m15), c8);
            __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(v, 4), c8);
            _mm256_storeu_ps(out + 8 * h,
                             _mm256_mul_ps(d, _mm256_cvtepi32_ps(lo)));
            _mm256_storeu_ps(out + 16 + 8 * h,
                             _mm256_mul_ps(d, _mm256_cvtepi32_ps(hi)));
        }
        return;
    }
    case MF_TYPE_Q8_0: {
        const unsigned char *p = row + j * 34;
        __m256 d = f16_bcast(p);
        for (int v = 0; v < 4; v++) {
            __m256i q = _mm256_cvtepi8_epi32(
                _mm_loadl_epi64((const __m128i *)(p + 2 + 8 * v)));
            _mm256_storeu_ps(out + 8 * v,
                             _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
        }
        return;
    }
    default: { /* MLX */
        const size_t ng = (size_t)(w->k / w->group_size);
        const size_t gi = (size_t)r * ng + (size_t)(j * 32 / w->group_size);
        __m256 s = mlx_param(w->scale_type, (const unsigned char *)w->scales, gi);
        __m256 b = mlx_param(w->scale_type, (const unsigned char *)w->biases, gi);
        const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
        for (int v = 0; v < 4; v++) {
            __m256i q;
            if (w->type == MF_TYPE_MLX_Q4)
                q = _mm256_and_si256(
                    _mm256_srlv_epi32(
                        _mm256_set1_epi32((int)ld32(row + j * 16 + v * 4)), sh),
                    _mm256_set1_epi32(15));
            else
                q = _mm256_cvtepu8_epi32(
                    _mm_loadl_epi64((const __m128i *)(row + j * 32 + v * 8)));
            /* rounded product, then the sum (no FMA) */
            __m256 p = _mm256_mul_ps(s, _mm256_cvtepi32_ps(q));
            _mm256_storeu_ps(out + 8 * v, _mm256_add_ps(p, b));
        }
        return;
    }
    }
}

/* Elements [k0, k0 + n) of a float-typed row, exact. */
static void dequant_floats(mf_type T, const unsigned char *row, int64_t k0,
                           int64_t n, float *out)
{
    int64_t k = 0;
    if (T == MF_TYPE_F32) {
        memcpy(out, row + k0 * 4, (size_t)n * 4);
        return;
    }
    const unsigned char *p = row + k0 * 2;
    if (T == MF_TYPE_F16) {
        for (; k + 8 <= n; k += 8)
            _mm256_storeu_ps(out + k, f16x8_exact(_mm_loadu_si128(
                                          (const __m128i *)(p + k * 2))));
        for (; k < n; k++)
            out[k] = mf_f16_to_f32(ld16(p + k * 2));
        return;
    }
    for (; k + 8 <= n; k += 8) {
        __m256i u = _mm256_cvtepu16_epi32(
            _mm_loadu_si128((const __m128i *)(p + k * 2)));
        _mm256_storeu_si256((__m256i *)(void *)(out + k),
                            _mm256_slli_epi32(u, 16));
    }
    for (; k < n; k++)
        out[k] = u2f((uint32_t)ld16(p + k * 2) << 16);
}

static int is_float_type(mf_type t) { return t <= MF_TYPE_BF16; }

static void avx2_dequant_row(const mf_tensor *w, int64_t r, float *out)
{
    const unsigned char *row = (const unsigned char *)w->data +
                               (size_t)r * row_stride(w);
    if (is_float_type(w->type)) {
        dequant_floats(w->type, row, 0, w->k, out);
        return;
    }
    for (int64_t j = 0; j < w->k / 32; j++)
        dequant_piece(w, r, row, j, out + j * 32);
}

/* dot(row r, x) from the exact weights, products rounded before the sums:
 * the slow path for outputs the fast kernels found not finite, so Inf and
 * NaN come out as the format's weights make them (the fast kernels factor
 * block scales and offsets out, which can turn Inf * w into Inf - Inf). */
static float exact_dot(const mf_tensor *w, int64_t r, const float *x)
{
    const unsigned char *row = (const unsigned char *)w->data +
                               (size_t)r * row_stride(w);
    float buf[32];
    __m256 acc = _mm256_setzero_ps();
    const int64_t K = w->k;
    int64_t k0 = 0;
    for (; k0 + 32 <= K; k0 += 32) {
        if (is_float_type(w->type))
            dequant_floats(w->type, row, k0, 32, buf);
        else
            dequant_piece(w, r, row, k0 / 32, buf);
        for (int v = 0; v < 4; v++)
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(buf + 8 * v),
                                                   _mm256_loadu_ps(x + k0 + 8 * v)));
    }
    float t = hsum(acc);
    if (k0 < K) {
        dequant_floats(w->type, row, k0, K - k0, buf);
        for (int64_t k = k0; k < K; k++)
            t += buf[k - k0] * x[k];
    }
    return t;
}

/* -------------------------------------------------------- qdot (EXACT) -- */

/* One weight row as the qdot kernels see it. */
typedef struct qrow {
    const unsigned char *p;       /* row start */
    const unsigned char *sc, *bi; /* MLX: this row's scales and biases */
    const unsigned char *pf;      /* where to prefetch: a later row */
} qrow;

/* Bytes of one 32-wide piece of a row. */
AI size_t piece_bytes(mf_type T)
{
    switch (T) {
    case MF_TYPE_F32: return 128;
    case MF_TYPE_F16:
    case MF_TYPE_BF16: return 64;
    case MF_TYPE_Q4_0: return 18;
    case MF_TYPE_Q8_0: return 34;
    case MF_TYPE_MLX_Q4: return 16;
    default: return 32;
    }
}

/* The rows of a block are read side by side, a few bytes of each at a
 * time: too many short streams for the hardware prefetchers, so each piece
 * also prefetches the same piece of a row PF_BLOCKS row blocks ahead. */
#ifndef PF_BLOCKS
#define PF_BLOCKS 2
#endif
AI void prefetch_piece(mf_type T, const qrow *q, int64_t j)
{
    _mm_prefetch((const char *)(q->pf + (size_t)j * piece_bytes(T)),
                 _MM_HINT_T0);
}

/* Pieces are taken GRP at a time. The scales (and MLX biases) of a group
 * are widened together, one group ahead of their use: the kernels read them
 * back with broadcast loads once the vector stores have reached the cache
 * (read at once, a narrow load from a wide store in flight would stall). */
enum { GRP = 8 };

AI size_t scale_offset(mf_type T, mf_type st, int gsh, int64_t j)
{
    if (T == MF_TYPE_Q4_0)
        return (size_t)j * 18;
    if (T == MF_TYPE_Q8_0)
        return (size_t)j * 34;
    return (size_t)(j >> gsh) * param_size(st);
}

/* Eight f16/bf16 values (0 past n) packed from 2-byte fields. */
AI __m128i pack16(const unsigned char *base, mf_type T, mf_type st, int gsh,
                  int64_t j0, int n)
{
    uint64_t h[GRP];
    if (n == GRP) { /* the common case: straight-line code */
        for (int u = 0; u < GRP; u++)
            h[u] = ld16(base + scale_offset(T, st, gsh, j0 + u));
    } else {
        for (int u = 0; u < GRP; u++)
            h[u] = u < n ? ld16(base + scale_offset(T, st, gsh, j0 + u)) : 0;
    }
    uint64_t lo = h[0] | h[1] << 16 | h[2] << 32 | h[3] << 48;
    uint64_t hi = h[4] | h[5] << 16 | h[6] << 32 | h[7] << 48;
    return _mm_set_epi64x((long long)hi, (long long)lo);
}

AI __m256 widen16(mf_type t, __m128i h)
{
    if (t == MF_TYPE_BF16)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* MLX: the GRP per-piece values of pieces [j0, j0 + GRP) of a row (j0 a
 * multiple of GRP) from its contiguous per-group array: 8, 4 or 2 group
 * values, each repeated for its 1, 2 or 4 pieces. */
AI __m256 mlx_group8(mf_type st, int gsh, const unsigned char *arr,
                     int64_t j0)
{
    const size_t g0 = (size_t)(j0 >> gsh);
    if (st == MF_TYPE_F32) {
        const float *f = (const float *)(const void *)arr + g0;
        if (gsh == 0)
            return _mm256_loadu_ps(f);
        __m256 v = gsh == 1 ? _mm256_castps128_ps256(_mm_loadu_ps(f))
                            : _mm256_castps128_ps256(_mm_castsi128_ps(
                                  _mm_loadl_epi64((const __m128i *)(const void *)f)));
        __m256i ix = gsh == 1 ? _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3)
                              : _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
        return _mm256_permutevar8x32_ps(v, ix);
    }
    const unsigned char *p = arr + g0 * 2;
    __m128i h;
    if (gsh == 0) {
        h = _mm_loadu_si128((const __m128i *)p);
    } else if (gsh == 1) {
        h = _mm_loadl_epi64((const __m128i *)p);
        h = _mm_unpacklo_epi16(h, h);
    } else {
        uint32_t w;
        memcpy(&w, p, 4);
        h = _mm_cvtsi32_si128((int)w);
        h = _mm_unpacklo_epi16(h, h);
        h = _mm_unpacklo_epi32(h, h);
    }
    return widen16(st, h);
}

/* f32 scales (and MLX biases) of pieces [j0, j0 + n) of a row, n <= GRP,
 * zero past n. */
AI void group_scales(mf_type T, mf_type st, int gsh, const qrow *q,
                     int64_t j0, int n, float *s, float *b)
{
    if (T == MF_TYPE_Q4_0 || T == MF_TYPE_Q8_0) {
        _mm256_storeu_ps(s, widen16(MF_TYPE_F16, pack16(q->p, T, st, gsh, j0, n)));
        return;
    }
    if (n == GRP) { /* whole groups: no read past the row's array */
        _mm256_storeu_ps(s, mlx_group8(st, gsh, q->sc, j0));
        _mm256_storeu_ps(b, mlx_group8(st, gsh, q->bi, j0));
        return;
    }
    if (st == MF_TYPE_F32) {
        for (int u = 0; u < GRP; u++) {
            size_t g = (size_t)((j0 + u) >> gsh) * 4;
            s[u] = b[u] = 0.0f;
            if (u < n) {
                memcpy(&s[u], q->sc + g, 4);
                memcpy(&b[u], q->bi + g, 4);
            }
        }
        return;
    }
    _mm256_storeu_ps(s, widen16(st, pack16(q->sc, T, st, gsh, j0, n)));
    _mm256_storeu_ps(b, widen16(st, pack16(q->bi, T, st, gsh, j0, n)));
}

/* Q4_0 / Q8_0: the 32 codes of block j as f32. Q4_0: q - 8 when sub8,
 * else the stored 0..15 (the caller subtracts 8 through the activation
 * sums). */
AI void block_codes(mf_type T, const qrow *q, int64_t j, int sub8,
                    __m256 c[4])
{
    if (T == MF_TYPE_Q4_0) {
        const unsigned char *p = q->p + j * 18 + 2;
        const __m256i m15 = _mm256_set1_epi32(15);
        const __m256i off = _mm256_set1_epi32(sub8 ? 8 : 0);
        __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
        __m256i v1 = _mm256_cvtepu8_epi32(
            _mm_loadl_epi64((const __m128i *)(p + 8)));
        __m256i q[4] = {_mm256_and_si256(v0, m15), _mm256_and_si256(v1, m15),
                        _mm256_srli_epi32(v0, 4), _mm256_srli_epi32(v1, 4)};
        for (int v = 0; v < 4; v++)
            c[v] = _mm256_cvtepi32_ps(sub8 ? _mm256_sub_epi32(q[v], off) : q[v]);
    } else {
        const unsigned char *p = q->p + j * 34 + 2;
        for (int v = 0; v < 4; v++)
            c[v] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                _mm_loadl_epi64((const __m128i *)(p + 8 * v))));
    }
}

/* Float types and MLX: the 32 weights of piece j as f32. MLX takes the
 * piece's scale and bias broadcast; its product and sum are fused here (one
 * rounding instead of two; qdot's tolerance covers it). */
AI void piece_f32(mf_type T, const qrow *q, int64_t j, __m256 s, __m256 b,
                  __m256 w[4])
{
    switch (T) {
    case MF_TYPE_F32:
        for (int v = 0; v < 4; v++)
            w[v] = _mm256_loadu_ps((const float *)(const void *)(q->p) +
                                   j * 32 + v * 8);
        break;
    case MF_TYPE_F16:
        for (int v = 0; v < 4; v++)
            w[v] = _mm256_cvtph_ps(_mm_loadu_si128(
                (const __m128i *)(q->p + j * 64 + v * 16)));
        break;
    case MF_TYPE_BF16:
        for (int v = 0; v < 4; v++)
            w[v] = _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(_mm_loadu_si128(
                    (const __m128i *)(q->p + j * 64 + v * 16))),
                16));
        break;
    case MF_TYPE_MLX_Q4: {
        const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
        const __m256i m15 = _mm256_set1_epi32(15);
        for (int v = 0; v < 4; v++) {
            __m256i c = _mm256_and_si256(
                _mm256_srlv_epi32(
                    _mm256_set1_epi32((int)ld32(q->p + j * 16 + v * 4)), sh),
                m15);
            w[v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), s, b);
        }
        break;
    }
    default: /* MLX_Q8 */
        for (int v = 0; v < 4; v++) {
            __m256i c = _mm256_cvtepu8_epi32(
                _mm_loadl_epi64((const __m128i *)(q->p + j * 32 + v * 8)));
            w[v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), s, b);
        }
        break;
    }
}

/* Element k of a float-typed row (the tail past the last 32-wide piece). */
AI float elem_f32(mf_type T, const unsigned char *row, int64_t k)
{
    if (T == MF_TYPE_F32) {
        float f;
        memcpy(&f, row + k * 4, 4);
        return f;
    }
    if (T == MF_TYPE_F16)
        return _cvtsh_ss(ld16(row + k * 2));
    return u2f((uint32_t)ld16(row + k * 2) << 16);
}

/* R weight rows x MC activation rows, NA accumulators per pair; writes
 * y[m][yi + r].
 *  - Q4_0 / Q8_0: per block, b = sum(code * x) in f32, then acc += d * b:
 *    one scale multiply per block instead of one per weight. Q4_0 with
 *    MC = 1 adds -8 * sum(x) to b (sum(x) taken lane-wise in the same order
 *    as b, so a block of zero weights, codes 8, sums to exactly 0); with
 *    MC > 1 the codes are q - 8.
 *  - MLX and float types: weights decoded to f32, then acc += w * x. */
AI void qdot_core(mf_type T, mf_type st, int gsh, const qrow *rw, int R,
                  int64_t K, const float *const *x, int MC, int NA,
                  float *const *y, int64_t yi)
{
    const int blk = T == MF_TYPE_Q4_0 || T == MF_TYPE_Q8_0;
    const int mlx = is_mlx(T);
    __m256 acc[16]; /* [r][m][a] */
    float sc[2][4][GRP], bi[2][4][GRP];
    const float *xp[4];
    for (int m = 0; m < MC; m++)
        xp[m] = x[m];
    for (int i = 0; i < R * MC * NA; i++)
        acc[i] = _mm256_setzero_ps();
    const int64_t nu = K / 32;
    if (blk || mlx)
        for (int r = 0; r < R; r++)
            group_scales(T, st, gsh, &rw[r], 0, nu < GRP ? (int)nu : GRP,
                         sc[0][r], bi[0][r]);
    for (int64_t j0 = 0; j0 < nu; j0 += GRP) {
        const int n = nu - j0 < GRP ? (int)(nu - j0) : GRP;
        const int cur = (int)((j0 / GRP) & 1);
        if ((blk || mlx) && j0 + GRP < nu) {
            const int64_t j1 = j0 + GRP;
            const int n1 = nu - j1 < GRP ? (int)(nu - j1) : GRP;
            for (int r = 0; r < R; r++)
                group_scales(T, st, gsh, &rw[r], j1, n1, sc[cur ^ 1][r],
                             bi[cur ^ 1][r]);
        }
        for (int u = 0; u < n; u++) {
            const int64_t j = j0 + u;
            /* Q4_0 with one activation row: -8 sum(x) shared by the R rows
             * (else the codes take the -8, shared by the MC rows) */
            const int xsum = T == MF_TYPE_Q4_0 && MC == 1;
            __m256 xs8[4];
            if (xsum)
                for (int m = 0; m < MC; m++) {
                    const float *xm = xp[m] + j * 32;
                    __m256 t = _mm256_add_ps(_mm256_loadu_ps(xm),
                                             _mm256_loadu_ps(xm + 8));
                    t = _mm256_add_ps(t, _mm256_loadu_ps(xm + 16));
                    t = _mm256_add_ps(t, _mm256_loadu_ps(xm + 24));
                    xs8[m] = _mm256_mul_ps(t, _mm256_set1_ps(-8.0f));
                }
            for (int r = 0; r < R; r++) {
                prefetch_piece(T, &rw[r], j);
                if (blk) {
                    __m256 c[4];
                    block_codes(T, &rw[r], j, !xsum, c);
                    __m256 d = _mm256_broadcast_ss(&sc[cur][r][u]);
                    for (int m = 0; m < MC; m++) {
                        const float *xm = xp[m] + j * 32;
                        __m256 b = _mm256_mul_ps(c[0], _mm256_loadu_ps(xm));
                        b = _mm256_fmadd_ps(c[1], _mm256_loadu_ps(xm + 8), b);
                        b = _mm256_fmadd_ps(c[2], _mm256_loadu_ps(xm + 16), b);
                        b = _mm256_fmadd_ps(c[3], _mm256_loadu_ps(xm + 24), b);
                        if (xsum)
                            b = _mm256_add_ps(b, xs8[m]);
                        __m256 *a = &acc[(r * MC + m) * NA];
                        *a = _mm256_fmadd_ps(b, d, *a);
                    }
                } else {
                    __m256 w[4];
                    __m256 s = _mm256_setzero_ps(), b = _mm256_setzero_ps();
                    if (mlx) {
                        s = _mm256_broadcast_ss(&sc[cur][r][u]);
                        b = _mm256_broadcast_ss(&bi[cur][r][u]);
                    }
                    piece_f32(T, &rw[r], j, s, b, w);
                    for (int m = 0; m < MC; m++)
                        for (int v = 0; v < 4; v++) {
                            __m256 *a = &acc[(r * MC + m) * NA + v % NA];
                            *a = _mm256_fmadd_ps(
                                w[v], _mm256_loadu_ps(xp[m] + j * 32 + v * 8), *a);
                        }
                }
            }
        }
    }
    for (int r = 0; r < R; r++) {
        for (int m = 0; m < MC; m++) {
            __m256 s = acc[(r * MC + m) * NA];
            if (NA > 1)
                s = _mm256_add_ps(s, acc[(r * MC + m) * NA + 1]);
            float t = hsum(s);
            for (int64_t k = nu * 32; k < K; k++)
                t += elem_f32(T, rw[r].p, k) * xp[m][k];
            y[m][yi + r] = t;
        }
    }
}

AI void qdot_rows(mf_type T, const mf_tensor *w, int64_t r0, int64_t nr,
                  const float *const *x, int M, float *const *y)
{
    const size_t stride = row_stride(w);
    const int mlx = is_mlx(T);
    const int gsh = mlx ? group_shift(w) : 0;
    const mf_type st = w->scale_type;
    const size_t gb = mlx ? (size_t)(w->k / w->group_size) *
                                param_size(st) : 0;
    const int64_t K = w->k;
    /* M = 1: blocks of 4 rows share the activation loads; M > 1: one row
     * at a time against chunks of 4 activation rows (the row stays in L1
     * across the chunks; more accumulators would not fit the registers) */
    const int R = M == 1 ? 4 : 1;
    qrow rw[4];
    int64_t i = 0;
    while (i < nr) {
        int rb = nr - i >= R ? R : 1;
        for (int r = 0; r < rb; r++) {
            size_t ar = (size_t)(r0 + i + r);
            rw[r].p = (const unsigned char *)w->data + ar * stride;
            rw[r].sc = mlx ? (const unsigned char *)w->scales + ar * gb : NULL;
            rw[r].bi = mlx ? (const unsigned char *)w->biases + ar * gb : NULL;
            rw[r].pf = rw[r].p + (size_t)(PF_BLOCKS * R) * stride;
        }
        if (M == 1) {
            if (rb == 4)
                qdot_core(T, st, gsh, rw, 4, K, x, 1, 2, y, i);
            else
                qdot_core(T, st, gsh, rw, 1, K, x, 1, 2, y, i);
        } else {
            for (int m0 = 0; m0 < M; m0 += 4) {
                const float *const *xm = x + m0;
                float *const *ym = y + m0;
                switch (M - m0 < 4 ? M - m0 : 4) {
                case 1: qdot_core(T, st, gsh, rw, 1, K, xm, 1, 2, ym, i); break;
                case 2: qdot_core(T, st, gsh, rw, 1, K, xm, 2, 2, ym, i); break;
                case 3: qdot_core(T, st, gsh, rw, 1, K, xm, 3, 1, ym, i); break;
                default: qdot_core(T, st, gsh, rw, 1, K, xm, 4, 1, ym, i); break;
                }
            }
        }
        for (int r = 0; r < rb; r++)
            for (int m = 0; m < M; m++)
                if (!isfinite(y[m][i + r]))
                    y[m][i + r] = exact_dot(w, r0 + i + r, x[m]);
        i += rb;
    }
}

#define QDOT_TYPE(name, T)                                                   \
    static void name(const mf_tensor *w, int64_t r0, int64_t nr,             \
                     const float *const *x, int M, float *const *y)          \
    {                                                                        \
        qdot_rows(T, w, r0, nr, x, M, y);                                    \
    }

QDOT_TYPE(qdot_f32, MF_TYPE_F32)
QDOT_TYPE(qdot_f16, MF_TYPE_F16)
QDOT_TYPE(qdot_bf16, MF_TYPE_BF16)
QDOT_TYPE(qdot_q4_0, MF_TYPE_Q4_0)
QDOT_TYPE(qdot_q8_0, MF_TYPE_Q8_0)
QDOT_TYPE(qdot_mlx_q4, MF_TYPE_MLX_Q4)
QDOT_TYPE(qdot_mlx_q8, MF_TYPE_MLX_Q8)

static void avx2_qdot(const mf_tensor *w, int64_t r0, int64_t nr,
                      const float *const *x, int M, float *const *y)
{
    switch (w->type) {
    case MF_TYPE_F32: qdot_f32(w, r0, nr, x, M, y); break;
    case MF_TYPE_F16: qdot_f16(w, r0, nr, x, M, y); break;
    case MF_TYPE_BF16: qdot_bf16(w, r0, nr, x, M, y); break;
    case MF_TYPE_Q4_0: qdot_q4_0(w, r0, nr, x, M, y); break;
    case MF_TYPE_Q8_0: qdot_q8_0(w, r0, nr, x, M, y); break;
    case MF_TYPE_MLX_Q4: qdot_mlx_q4(w, r0, nr, x, M, y); break;
    case MF_TYPE_MLX_Q8: qdot_mlx_q8(w, r0, nr, x, M, y); break;
    default: break;
    }
}

/* ----------------------------------------------------- quantize (INT8) -- */

/* As the reference: d = absmax / 127, q = nearest-even(x / d) clamped to
 * +-127, s = d * sum(q); all-zero (or underflowing) blocks get d = s = 0,
 * blocks holding Inf or NaN get d = s = NaN and q = 0. */
static void avx2_quantize_q8(const float *x, int64_t K, mf_q8blk *out)
{
    const __m256i absm = _mm256_set1_epi32(0x7fffffff);
    const __m256 lim = _mm256_set1_ps(127.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < K / 32; b++) {
        const float *xb = x + b * 32;
        mf_q8blk *o = &out[b];
        __m256 v[4];
        __m256i mx = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            mx = _mm256_max_epu32(
                mx, _mm256_and_si256(_mm256_castps_si256(v[i]), absm));
        }
        __m128i m4 = _mm_max_epu32(_mm256_castsi256_si128(mx),
                                   _mm256_extracti128_si256(mx, 1));
        m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, 0x4e));
        m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, 0xb1));
        uint32_t amax = (uint32_t)_mm_cvtsi128_si32(m4);
        if (amax >= 0x7f800000u) {
            memset(o->q, 0, sizeof o->q);
            o->d = o->s = u2f(0x7fc00000u);
            continue;
        }
        float d = u2f(amax) / 127.0f;
        o->d = d;
        if (d == 0.0f) {
            memset(o->q, 0, sizeof o->q);
            o->s = 0.0f;
            continue;
        }
        __m256 dv = _mm256_set1_ps(d);
        __m256i qi[4];
        for (int i = 0; i < 4; i++) {
            __m256 t = _mm256_round_ps(_mm256_div_ps(v[i], dv),
                                       _MM_FROUND_TO_NEAREST_INT |
                                           _MM_FROUND_NO_EXC);
            t = _mm256_max_ps(_mm256_min_ps(t, lim),
                              _mm256_sub_ps(_mm256_setzero_ps(), lim));
            qi[i] = _mm256_cvttps_epi32(t);
        }
        __m256i sum = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]),
                                       _mm256_add_epi32(qi[2], qi[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum),
                                   _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]),
                                       _mm256_packs_epi32(qi[2], qi[3]));
        p = _mm256_permutevar8x32_epi32(p, perm);
        _mm256_storeu_si256((__m256i *)(void *)o->q, p);
        o->s = d * (float)_mm_cvtsi128_si32(s4);
    }
}

/* ------------------------------------------------------ qdot_q8 (INT8) -- */

/* Even activation codes into the low 128 bits, odd into the high: the order
 * of MLX 4-bit codes split into low and high nibbles. */
AI __m256i deinterleave_even_odd(__m256i x)
{
    const __m256i sh = _mm256_setr_epi8(
        0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
        0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(x, sh), 0xd8);
}

/* 16 bytes of 4-bit codes as 32 unsigned bytes: low nibbles in the low 128
 * bits, high nibbles in the high 128 (ggml Q4_0: elements 0..31 in order;
 * MLX: even elements, then odd). */
AI __m256i nibbles(const unsigned char *p)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(
        _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)),
        _mm256_set1_epi8(15));
}

/* R weight rows x MC activation rows: y[m][yi + r]. Per 32-wide piece,
 * with isum the integer dot product of the stored codes and the activation
 * codes (lane-wise, 8 partial sums):
 *   Q4_0 (codes c = q + 8): d_w (d_x isum(c) - 8 s_x), each lane taking s_x;
 *   Q8_0: d_w (d_x isum), through the sign trick;
 *   MLX:  scale (d_x isum) + bias s_x, MLX_Q8 codes as c - 128 through the
 *         sign trick plus 128 sum(x); the bias terms of a group of pieces
 *         are summed 8 at a time. */
AI void q8_core(mf_type T, mf_type st, int gsh, const qrow *rw, int R,
                int64_t K, const mf_q8blk *const *xq, int MC,
                float *const *y, int64_t yi)
{
    const int mlx = is_mlx(T);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[16]; /* [r][m] */
    float sc[2][4][GRP], bi[2][4][GRP];
    const mf_q8blk *xp[4];
    for (int m = 0; m < MC; m++)
        xp[m] = xq[m];
    for (int i = 0; i < R * MC; i++)
        acc[i] = _mm256_setzero_ps();
    const int64_t nu = K / 32;
    for (int r = 0; r < R; r++)
        group_scales(T, st, gsh, &rw[r], 0, nu < GRP ? (int)nu : GRP,
                     sc[0][r], bi[0][r]);
    for (int64_t j0 = 0; j0 < nu; j0 += GRP) {
        const int n = nu - j0 < GRP ? (int)(nu - j0) : GRP;
        const int cur = (int)((j0 / GRP) & 1);
        if (j0 + GRP < nu) {
            const int64_t j1 = j0 + GRP;
            const int n1 = nu - j1 < GRP ? (int)(nu - j1) : GRP;
            for (int r = 0; r < R; r++)
                group_scales(T, st, gsh, &rw[r], j1, n1, sc[cur ^ 1][r],
                             bi[cur ^ 1][r]);
        }
        if (mlx)
            for (int m = 0; m < MC; m++) {
                float sv[GRP];
                for (int u = 0; u < GRP; u++)
                    sv[u] = u < n ? xp[m][j0 + u].s : 0.0f;
                __m256 sx = _mm256_setr_ps(sv[0], sv[1], sv[2], sv[3], sv[4],
                                           sv[5], sv[6], sv[7]);
                for (int r = 0; r < R; r++)
                    acc[r * MC + m] = _mm256_fmadd_ps(
                        _mm256_loadu_ps(bi[cur][r]), sx, acc[r * MC + m]);
            }
        for (int u = 0; u < n; u++) {
            const int64_t j = j0 + u;
            __m256i xv[4], xc[4];
            for (int m = 0; m < MC; m++) {
                __m256i v = _mm256_loadu_si256(
                    (const __m256i *)(const void *)xp[m][j].q);
                xv[m] = T == MF_TYPE_MLX_Q4 ? deinterleave_even_odd(v) : v;
                if (T == MF_TYPE_MLX_Q8) /* 128 * sum(x) per 4 */
                    xc[m] = _mm256_slli_epi32(
                        _mm256_madd_epi16(
                            _mm256_maddubs_epi16(_mm256_set1_epi8(1), v), ones),
                        7);
            }
            for (int r = 0; r < R; r++) {
                const qrow *q = &rw[r];
                prefetch_piece(T, q, j);
                __m256 ws = _mm256_broadcast_ss(&sc[cur][r][u]);
                __m256i c, a = _mm256_setzero_si256();
                if (T == MF_TYPE_Q4_0) {
                    c = nibbles(q->p + j * 18 + 2);
                } else if (T == MF_TYPE_MLX_Q4) {
                    c = nibbles(q->p + j * 16);
                } else if (T == MF_TYPE_Q8_0) {
                    c = _mm256_loadu_si256((const __m256i *)(q->p + j * 34 + 2));
                    a = _mm256_sign_epi8(c, c); /* |c|, as unsigned */
                } else {
                    c = _mm256_xor_si256(
                        _mm256_loadu_si256((const __m256i *)(q->p + j * 32)),
                        _mm256_set1_epi8((char)0x80)); /* c - 128 */
                    a = _mm256_abs_epi8(c);
                }
                for (int m = 0; m < MC; m++) {
                    __m256i p;
                    if (T == MF_TYPE_Q4_0 || T == MF_TYPE_MLX_Q4)
                        p = _mm256_maddubs_epi16(c, xv[m]);
                    else
                        p = _mm256_maddubs_epi16(a, _mm256_sign_epi8(xv[m], c));
                    __m256i isum = _mm256_madd_epi16(p, ones);
                    if (T == MF_TYPE_MLX_Q8)
                        isum = _mm256_add_epi32(isum, xc[m]);
                    __m256 f = _mm256_cvtepi32_ps(isum);
                    __m256 dx = _mm256_broadcast_ss(&xp[m][j].d);
                    __m256 t;
                    if (T == MF_TYPE_Q4_0)
                        t = _mm256_fmsub_ps(f, dx, _mm256_broadcast_ss(&xp[m][j].s));
                    else
                        t = _mm256_mul_ps(f, dx);
                    __m256 *ac = &acc[r * MC + m];
                    *ac = _mm256_fmadd_ps(t, ws, *ac);
                }
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MC; m++)
            y[m][yi + r] = hsum(acc[r * MC + m]);
}

/* dot(row r, activation blocks) summed as the reference sums it: the slow
 * path for outputs the fast kernel found not finite (it factors block terms
 * differently, which can turn Inf * 0 into Inf - Inf or the reverse). */
static float exact_dot_q8(const mf_tensor *w, int64_t r, const mf_q8blk *xq)
{
    const unsigned char *row = (const unsigned char *)w->data +
                               (size_t)r * row_stride(w);
    const int mlx = is_mlx(w->type);
    float acc = 0.0f;
    for (int64_t j = 0; j < w->k / 32; j++) {
        int32_t isum = 0;
        for (int e = 0; e < 32; e++) {
            int c;
            switch (w->type) {
            case MF_TYPE_Q4_0: {
                unsigned char b = row[j * 18 + 2 + (e & 15)];
                c = (e < 16 ? b & 15 : b >> 4) - 8;
                break;
            }
            case MF_TYPE_Q8_0: c = (int8_t)row[j * 34 + 2 + e]; break;
            case MF_TYPE_MLX_Q4: {
                unsigned char b = row[j * 16 + e / 2];
                c = e & 1 ? b >> 4 : b & 15;
                break;
            }
            default: c = row[j * 32 + e]; break;
            }
            isum += c * xq[j].q[e];
        }
        if (mlx) {
            size_t gi = (size_t)r * (size_t)(w->k / w->group_size) +
                        (size_t)(j * 32 / w->group_size);
            const unsigned char *sa = (const unsigned char *)w->scales;
            const unsigned char *ba = (const unsigned char *)w->biases;
            float s, b;
            if (w->scale_type == MF_TYPE_F32) {
                memcpy(&s, sa + gi * 4, 4);
                memcpy(&b, ba + gi * 4, 4);
            } else if (w->scale_type == MF_TYPE_F16) {
                s = mf_f16_to_f32(ld16(sa + gi * 2));
                b = mf_f16_to_f32(ld16(ba + gi * 2));
            } else {
                s = u2f((uint32_t)ld16(sa + gi * 2) << 16);
                b = u2f((uint32_t)ld16(ba + gi * 2) << 16);
            }
            float sd = s * xq[j].d;
            float t = sd * (float)isum;
            float u = b * xq[j].s;
            acc = acc + (t + u);
        } else {
            size_t bb = (size_t)j * (w->type == MF_TYPE_Q4_0 ? 18 : 34);
            float dd = mf_f16_to_f32(ld16(row + bb)) * xq[j].d;
            float t = dd * (float)isum;
            acc = acc + t;
        }
    }
    return acc;
}

AI void q8_rows(mf_type T, const mf_tensor *w, int64_t r0, int64_t nr,
                const mf_q8blk *const *xq, int M, float *const *y)
{
    const size_t stride = row_stride(w);
    const int mlx = is_mlx(T);
    const int gsh = mlx ? group_shift(w) : 0;
    const mf_type st = w->scale_type;
    const size_t gb = mlx ? (size_t)(w->k / w->group_size) *
                                param_size(st) : 0;
    const int64_t K = w->k;
    /* M = 1: blocks of 4 rows share the activation loads; M = 2: blocks of
     * 2; M > 2: one row at a time against chunks of 4 activation rows (the
     * row stays in L1 across the chunks; more accumulators and activation
     * scales would not fit the registers) */
    const int R = M == 1 ? 4 : M == 2 ? 2 : 1;
    qrow rw[4];
    int64_t i = 0;
    while (i < nr) {
        int rb = nr - i >= R ? R : 1;
        for (int r = 0; r < rb; r++) {
            size_t ar = (size_t)(r0 + i + r);
            rw[r].p = (const unsigned char *)w->data + ar * stride;
            rw[r].sc = mlx ? (const unsigned char *)w->scales + ar * gb : NULL;
            rw[r].bi = mlx ? (const unsigned char *)w->biases + ar * gb : NULL;
            rw[r].pf = rw[r].p + (size_t)(PF_BLOCKS * R) * stride;
        }
        if (M == 1) {
            if (rb == 4)
                q8_core(T, st, gsh, rw, 4, K, xq, 1, y, i);
            else
                q8_core(T, st, gsh, rw, 1, K, xq, 1, y, i);
        } else if (M == 2) {
            if (rb == 2)
                q8_core(T, st, gsh, rw, 2, K, xq, 2, y, i);
            else
                q8_core(T, st, gsh, rw, 1, K, xq, 2, y, i);
        } else {
            for (int m0 = 0; m0 < M; m0 += 4) {
                const mf_q8blk *const *xm = xq + m0;
                float *const *ym = y + m0;
                switch (M - m0 < 4 ? M - m0 : 4) {
                case 1: q8_core(T, st, gsh, rw, 1, K, xm, 1, ym, i); break;
                case 2: q8_core(T, st, gsh, rw, 1, K, xm, 2, ym, i); break;
                case 3: q8_core(T, st, gsh, rw, 1, K, xm, 3, ym, i); break;
                default: q8_core(T, st, gsh, rw, 1, K, xm, 4, ym, i); break;
                }
            }
        }
        for (int r = 0; r < rb; r++)
            for (int m = 0; m < M; m++)
                if (!isfinite(y[m][i + r]))
                    y[m][i + r] = exact_dot_q8(w, r0 + i + r, xq[m]);
        i += rb;
    }
}

#define Q8_TYPE(name, T)                                                     \
    static void name(const mf_tensor *w, int64_t r0, int64_t nr,             \
                     const mf_q8blk *const *xq, int M, float *const *y)      \
    {                                                                        \
        q8_rows(T, w, r0, nr, xq, M, y);                                     \
    }

Q8_TYPE(q8_q4_0, MF_TYPE_Q4_0)
Q8_TYPE(q8_q8_0, MF_TYPE_Q8_0)
Q8_TYPE(q8_mlx_q4, MF_TYPE_MLX_Q4)
Q8_TYPE(q8_mlx_q8, MF_TYPE_MLX_Q8)

static void avx2_qdot_q8(const mf_tensor *w, int64_t r0, int64_t nr,
                         const mf_q8blk *const *xq, int M, float *const *y)
{
    switch (w->type) {
    case MF_TYPE_Q4_0: q8_q4_0(w, r0, nr, xq, M, y); break;
    case MF_TYPE_Q8_0: q8_q8_0(w, r0, nr, xq, M, y); break;
    case MF_TYPE_MLX_Q4: q8_mlx_q4(w, r0, nr, xq, M, y); break;
    case MF_TYPE_MLX_Q8: q8_mlx_q8(w, r0, nr, xq, M, y); break;
    default: break;
    }
}

void mf_avx2_init_quant(mf_kernels *k)
{
    k->dequant_row = avx2_dequant_row;
    k->qdot = avx2_qdot;
    k->quantize_q8 = avx2_quantize_q8;
    k->qdot_q8 = avx2_qdot_q8;
}
