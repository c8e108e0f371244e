/* AVX-512 quantized-weight kernels: row dequantization, EXACT dot products
 * (qdot), activation quantization (quantize_q8) and INT8 dot products with
 * VNNI (qdot_q8).
 *
 * EXACT: a tile of R weight rows is decoded 32 elements at a time into two
 * registers of exact f32 weights (bit-identical to the reference: a Q4_0 or
 * MLX 4-bit block becomes a 16-entry table of its values, looked up with
 * vpermps; MLX 8-bit is one rounded product and one rounded sum) and
 * multiplied into MB activation rows at once. Larger M loops over chunks of
 * MB activation rows inside the tile, so the tile's rows (a few KiB) are
 * re-read from L1, never from memory.
 *
 * INT8: 16 weight rows are transposed on the fly so that each 32-bit lane of
 * a register holds four codes of one row; one vpdpbusd then advances the
 * integer dot products of all 16 rows by four elements, with the
 * activation's four int8 codes broadcast. Per 32-element block the 16 lane
 * sums are converted once and scaled by the 16 rows' scales. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "avx512.h"

#define AI static inline __attribute__((always_inline))

/* ------------------------------------------------------------ helpers -- */

static size_t row_stride(const mf_tensor *w)
{
    return w->row_stride ? w->row_stride : mf_tensor_row_bytes(w->type, w->k);
}

AI float ld_f16(const unsigned char *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AI uint32_t ld_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* MLX scale or bias number i, widened to f32. */
AI float mlx_param(mf_type st, const void *arr, size_t i)
{
    const unsigned char *p = (const unsigned char *)arr;
    if (st == MF_TYPE_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    if (st == MF_TYPE_F16)
        return ld_f16(p + 2 * i);
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

AI __m512 iota_ps(void)
{
    return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                          15);
}

/* MLX 4-bit: element 2j is the low nibble of byte j, 2j+1 the high one.
 * Dword lane i of the first half must index with byte i/2 shifted by
 * 4 (i & 1); of the second half with byte 8 + i/2. */
AI __m512i mlx4_perm_lo(void)
{
    return _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
}
AI __m512i mlx4_perm_hi(void)
{
    return _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14,
                             14, 15, 15);
}
AI __m512i mlx4_shift(void)
{
    return _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
}

/* ----------------------------------------------- exact 32-wide decoding -- */

/* Per-group state of an MLX row: Q4 a 16-entry value table in ta; Q8 the
 * broadcast scale in ta and bias in tb. Products and sums are separate
 * instructions: the format rounds the product, then the sum. */
AI void mlx_group(int t, const mf_tensor *w, size_t gi, __m512 *ta,
                  __m512 *tb)
{
    __m512 s = _mm512_set1_ps(mlx_param(w->scale_type, w->scales, gi));
    __m512 b = _mm512_set1_ps(mlx_param(w->scale_type, w->biases, gi));
    if (t == MF_TYPE_MLX_Q4) {
        *ta = _mm512_add_ps(_mm512_mul_ps(s, iota_ps()), b);
    } else {
        *ta = s;
        *tb = b;
    }
}

/* Elements [32c, 32c + 32) of a row of a quantized type (or of a float type
 * with at least 32c + 32 elements) as exact f32 in *lo (first 16) and *hi. */
AI void decode32(int t, const unsigned char *row, int64_t c, __m512 ta,
                 __m512 tb, __m512 *lo, __m512 *hi)
{
    switch (t) {
    case MF_TYPE_F32: {
        const float *f = (const float *)(const void *)row + 32 * c;
        *lo = _mm512_loadu_ps(f);
        *hi = _mm512_loadu_ps(f + 16);
        break;
    }
    case MF_TYPE_F16: {
        const unsigned char *p = row + 64 * c;
        *lo = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        *hi = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 32)));
        break;
    }
    case MF_TYPE_BF16: {
        const unsigned char *p = row + 64 * c;
        __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
        __m512i b = _mm512_cvtepu16_epi32(
            _mm256_loadu_si256((const __m256i *)(p + 32)));
        *lo = _mm512_castsi512_ps(_mm512_slli_epi32(a, 16));
        *hi = _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
        break;
    }
    case MF_TYPE_Q4_0: {
        const unsigned char *b = row + 18 * c;
        __m512 tbl = _mm512_mul_ps(_mm512_set1_ps(ld_f16(b)),
                                   _mm512_sub_ps(iota_ps(), _mm512_set1_ps(8)));
        __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b + 2)));
        *lo = _mm512_permutexvar_ps(v, tbl); /* low 4 bits index */
        *hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tbl);
        break;
    }
    case MF_TYPE_Q8_0: {
        const unsigned char *b = row + 34 * c;
        __m512 d = _mm512_set1_ps(ld_f16(b));
        __m512i a = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2)));
        __m512i e = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18)));
        *lo = _mm512_mul_ps(d, _mm512_cvtepi32_ps(a));
        *hi = _mm512_mul_ps(d, _mm512_cvtepi32_ps(e));
        break;
    }
    case MF_TYPE_MLX_Q4: {
        __m512i v = _mm512_cvtepu8_epi32(
            _mm_loadu_si128((const __m128i *)(row + 16 * c)));
        __m512i il = _mm512_srlv_epi32(_mm512_permutexvar_epi32(mlx4_perm_lo(), v),
                                       mlx4_shift());
        __m512i ih = _mm512_srlv_epi32(_mm512_permutexvar_epi32(mlx4_perm_hi(), v),
                                       mlx4_shift());
        *lo = _mm512_permutexvar_ps(il, ta);
        *hi = _mm512_permutexvar_ps(ih, ta);
        break;
    }
    default: { /* MF_TYPE_MLX_Q8 */
        const unsigned char *p = row + 32 * c;
        __m512 a = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)));
        __m512 e = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 16))));
        *lo = _mm512_add_ps(_mm512_mul_ps(ta, a), tb);
        *hi = _mm512_add_ps(_mm512_mul_ps(ta, e), tb);
        break;
    }
    }
}

/* Float types: the last K % 32 (= n, 1..31) elements from element 32c,
 * zero-filled; nothing past the row is read. */
AI void decode_tail(int t, const unsigned char *row, int64_t c, int n,
                    __m512 *lo, __m512 *hi)
{
    __mmask16 ml = (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
    __mmask16 mh = (__mmask16)(n > 16 ? (1u << (n - 16)) - 1u : 0u);
    if (t == MF_TYPE_F32) {
        const float *f = (const float *)(const void *)row + 32 * c;
        *lo = _mm512_maskz_loadu_ps(ml, f);
        *hi = _mm512_maskz_loadu_ps(mh, f + 16);
    } else {
        const unsigned char *p = row + 64 * c;
        __m256i a = _mm256_maskz_loadu_epi16(ml, p);
        __m256i b = _mm256_maskz_loadu_epi16(mh, p + 32);
        if (t == MF_TYPE_F16) {
            *lo = _mm512_cvtph_ps(a);
            *hi = _mm512_cvtph_ps(b);
        } else {
            *lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(a), 16));
            *hi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
        }
    }
}

AI int is_mlx(int t) { return t == MF_TYPE_MLX_Q4 || t == MF_TYPE_MLX_Q8; }
AI int is_float(int t)
{
    return t == MF_TYPE_F32 || t == MF_TYPE_F16 || t == MF_TYPE_BF16;
}

/* ---------------------------------------------------------- dequant_row -- */

AI void dequant_t(int t, const mf_tensor *w, int64_t r, float *out)
{
    const unsigned char *row = (const unsigned char *)w->data +
                               (size_t)r * row_stride(w);
    const int64_t nc = w->k / 32;
    __m512 ta = _mm512_setzero_ps(), tb = _mm512_setzero_ps(), lo, hi;
    int64_t cpg = is_mlx(t) ? w->group_size / 32 : 1, left = 0;
    size_t gi = is_mlx(t) ? (size_t)r * (size_t)(w->k / w->group_size) : 0;
    for (int64_t c = 0; c < nc; c++) {
        if (is_mlx(t) && left-- == 0) {
            mlx_group(t, w, gi++, &ta, &tb);
            left = cpg - 1;
        }
        decode32(t, row, c, ta, tb, &lo, &hi);
        _mm512_storeu_ps(out + 32 * c, lo);
        _mm512_storeu_ps(out + 32 * c + 16, hi);
    }
    int n = (int)(w->k - 32 * nc);
    if (is_float(t) && n) {
        decode_tail(t, row, nc, n, &lo, &hi);
        __mmask16 ml = (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
        __mmask16 mh = (__mmask16)(n > 16 ? (1u << (n - 16)) - 1u : 0u);
        _mm512_mask_storeu_ps(out + 32 * nc, ml, lo);
        _mm512_mask_storeu_ps(out + 32 * nc + 16, mh, hi);
    }
}

static void avx512_dequant_row(const mf_tensor *w, int64_t r, float *out)
{
    switch (w->type) {
    case MF_TYPE_F32: dequant_t(MF_TYPE_F32, w, r, out); break;
    case MF_TYPE_F16: dequant_t(MF_TYPE_F16, w, r, out); break;
    case MF_TYPE_BF16: dequant_t(MF_TYPE_BF16, w, r, out); break;
    case MF_TYPE_Q4_0: dequant_t(MF_TYPE_Q4_0, w, r, out); break;
    case MF_TYPE_Q8_0: dequant_t(MF_TYPE_Q8_0, w, r, out); break;
    case MF_TYPE_MLX_Q4: dequant_t(MF_TYPE_MLX_Q4, w, r, out); break;
    default: dequant_t(MF_TYPE_MLX_Q8, w, r, out); break;
    }
}

/* ----------------------------------------------------------- qdot EXACT -- */

/* Rows r .. r+R-1 (absolute) against activation rows x[0 .. MB); results to
 * y[m][i .. i+R). Two accumulators per output when few outputs share the
 * tile, so the FMA chains stay independent. */
AI void qtile(int t, int R, int MB, const mf_tensor *w, int64_t r,
              const float *const *x, float *const *y, int64_t i)
{
    const int64_t K = w->k, nc = K / 32;
    const size_t st = row_stride(w);
    const int D = R * MB <= 4 ? 2 : 1;
    const unsigned char *p[4];
    __m512 acc[4][4][2], ta[4], tb[4], wl[4], wh[4];
    for (int rr = 0; rr < R; rr++) {
        p[rr] = (const unsigned char *)w->data + (size_t)(r + rr) * st;
        ta[rr] = tb[rr] = _mm512_setzero_ps();
        for (int m = 0; m < MB; m++)
            acc[rr][m][0] = acc[rr][m][1] = _mm512_setzero_ps();
    }
    const int64_t cpg = is_mlx(t) ? w->group_size / 32 : 1;
    const size_t ng = is_mlx(t) ? (size_t)(K / w->group_size) : 0;
    size_t gi = (size_t)r * ng;
    int64_t left = 0;
    for (int64_t c = 0; c < nc; c++) {
        if (is_mlx(t) && left-- == 0) {
            for (int rr = 0; rr < R; rr++)
                mlx_group(t, w, gi + (size_t)rr * ng, &ta[rr], &tb[rr]);
            gi++;
            left = cpg - 1;
        }
        for (int rr = 0; rr < R; rr++)
            decode32(t, p[rr], c, ta[rr], tb[rr], &wl[rr], &wh[rr]);
        for (int m = 0; m < MB; m++) {
            __m512 xl = _mm512_loadu_ps(x[m] + 32 * c);
            __m512 xh = _mm512_loadu_ps(x[m] + 32 * c + 16);
            for (int rr = 0; rr < R; rr++) {
                if (D == 2) {
                    acc[rr][m][0] = _mm512_fmadd_ps(wl[rr], xl, acc[rr][m][0]);
                    acc[rr][m][1] = _mm512_fmadd_ps(wh[rr], xh, acc[rr][m][1]);
                } else {
                    acc[rr][m][0] = _mm512_fmadd_ps(wl[rr], xl, acc[rr][m][0]);
                    acc[rr][m][0] = _mm512_fmadd_ps(wh[rr], xh, acc[rr][m][0]);
                }
            }
        }
    }
    const int n = (int)(K - 32 * nc);
    if (is_float(t) && n) {
        __mmask16 ml = (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
        __mmask16 mh = (__mmask16)(n > 16 ? (1u << (n - 16)) - 1u : 0u);
        for (int rr = 0; rr < R; rr++)
            decode_tail(t, p[rr], nc, n, &wl[rr], &wh[rr]);
        for (int m = 0; m < MB; m++) {
            __m512 xl = _mm512_maskz_loadu_ps(ml, x[m] + 32 * nc);
            __m512 xh = _mm512_maskz_loadu_ps(mh, x[m] + 32 * nc + 16);
            for (int rr = 0; rr < R; rr++) {
                acc[rr][m][0] = _mm512_fmadd_ps(wl[rr], xl, acc[rr][m][0]);
                acc[rr][m][1] = _mm512_fmadd_ps(wh[rr], xh, acc[rr][m][1]);
            }
        }
    }
    for (int m = 0; m < MB; m++)
        for (int rr = 0; rr < R; rr++)
            y[m][i + rr] = _mm512_reduce_add_ps(
                _mm512_add_ps(acc[rr][m][0], acc[rr][m][1]));
}

/* Rows in tiles of 4 (then single rows), activation rows in chunks of 4
 * inside each tile. */
AI void qdot_t(int t, const mf_tensor *w, int64_t r0, int64_t nr,
               const float *const *x, int M, float *const *y)
{
    int64_t i = 0;
    for (; i + 4 <= nr; i += 4)
        for (int m0 = 0; m0 < M; m0 += 4) {
            switch (M - m0) {
            case 1: qtile(t, 4, 1, w, r0 + i, x + m0, y + m0, i); break;
            case 2: qtile(t, 4, 2, w, r0 + i, x + m0, y + m0, i); break;
            case 3: qtile(t, 4, 3, w, r0 + i, x + m0, y + m0, i); break;
            default: qtile(t, 4, 4, w, r0 + i, x + m0, y + m0, i); break;
            }
        }
    for (; i < nr; i++)
        for (int m0 = 0; m0 < M; m0 += 4) {
            switch (M - m0) {
            case 1: qtile(t, 1, 1, w, r0 + i, x + m0, y + m0, i); break;
            case 2: qtile(t, 1, 2, w, r0 + i, x + m0, y + m0, i); break;
            case 3: qtile(t, 1, 3, w, r0 + i, x + m0, y + m0, i); break;
            default: qtile(t, 1, 4, w, r0 + i, x + m0, y + m0, i); break;
            }
        }
}

#define QDOT_FN(name, T)                                                  \
    static void name(const mf_tensor *w, int64_t r0, int64_t nr,          \
                     const float *const *x, int M, float *const *y)       \
    {                                                                     \
        qdot_t(T, w, r0, nr, x, M, y);                                    \
    }
QDOT_FN(qdot_f32, MF_TYPE_F32)
QDOT_FN(qdot_f16, MF_TYPE_F16)
QDOT_FN(qdot_bf16, MF_TYPE_BF16)
QDOT_FN(qdot_q4_0, MF_TYPE_Q4_0)
QDOT_FN(qdot_q8_0, MF_TYPE_Q8_0)
QDOT_FN(qdot_mlx4, MF_TYPE_MLX_Q4)
QDOT_FN(qdot_mlx8, MF_TYPE_MLX_Q8)

static void avx512_qdot(const mf_tensor *w, int64_t r0, int64_t nr,
                        const float *const *x, int M, float *const *y)
{
    switch (w->type) {
    case MF_TYPE_F32: qdot_f32(w, r0, nr, x, M, y); break;
    case MF_TYPE_F16: qdot_f16(w, r0, nr, x, M, y); break;
    case MF_TYPE_BF16: qdot_bf16(w, r0, nr, x, M, y); break;
    case MF_TYPE_Q4_0: qdot_q4_0(w, r0, nr, x, M, y); break;
    case MF_TYPE_Q8_0: qdot_q8_0(w, r0, nr, x, M, y); break;
    case MF_TYPE_MLX_Q4: qdot_mlx4(w, r0, nr, x, M, y); break;
    default: qdot_mlx8(w, r0, nr, x, M, y); break;
    }
}

void mf_avx512_init_quant(mf_kernels *k)
{
    k->dequant_row = avx512_dequant_row;
    k->qdot = avx512_qdot;
}
