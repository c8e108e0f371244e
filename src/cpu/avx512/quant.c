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
 * sums are converted once and scaled by the 16 rows' scales, which are
 * regrouped four blocks (or MLX groups) at a time with word permutes. */
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
AI void mlx_group_sb(int t, __m512 s, __m512 b, __m512 *ta, __m512 *tb)
{
    if (t == MF_TYPE_MLX_Q4) {
        *ta = _mm512_add_ps(_mm512_mul_ps(s, iota_ps()), b);
    } else {
        *ta = s;
        *tb = b;
    }
}

AI void mlx_group(int t, const mf_tensor *w, size_t gi, __m512 *ta,
                  __m512 *tb)
{
    mlx_group_sb(t, _mm512_set1_ps(mlx_param(w->scale_type, w->scales, gi)),
                 _mm512_set1_ps(mlx_param(w->scale_type, w->biases, gi)), ta, tb);
}

/* Parameters gi .. gi+n-1 (n <= 4, all within the row) of an MLX array
 * widened to f32 into out[0 .. n); masked loads touch nothing past them. */
AI void mlx_param4(mf_type st, const void *arr, size_t gi, int n, float *out)
{
    const __mmask8 mk = (__mmask8)((1u << n) - 1u);
    const unsigned char *p = (const unsigned char *)arr;
    __m128 v;
    if (st == MF_TYPE_F32) {
        v = _mm_maskz_loadu_ps(mk, p + 4 * gi);
    } else {
        __m128i h = _mm_maskz_loadu_epi16(mk, p + 2 * gi);
        v = st == MF_TYPE_F16 ? _mm_cvtph_ps(h)
                              : _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(h), 16));
    }
    _mm_storeu_ps(out, v);
}

/* Elements [32c, 32c + 32) of a row of a quantized type (or of a float type
 * with at least 32c + 32 elements) as exact f32 in *lo (first 16) and *hi.
 * Q4_0 takes its block scale d broadcast in tb. */
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
        __m512 tbl = _mm512_mul_ps(tb, _mm512_sub_ps(iota_ps(), _mm512_set1_ps(8)));
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

/* Prefetch hints for the rows after a tile. They form one contiguous range
 * (the rows of a tensor are consecutive), which the tile walks in step with
 * its own blocks, a 1/nb share per block, so the next tile starts from
 * cache: one sequential stream keeps DRAM busier than the tile's row streams
 * alone (Q4_0, M = 1, cold rows: INT8 18 -> 31 GB/s on the development
 * machine). Hints only: nothing is read, nothing past the tensor's rows. */
typedef struct pf_range {
    const char *base;
    size_t len;
} pf_range;

AI pf_range pf_next(const mf_tensor *w, int64_t r_next, int64_t rows)
{
    const int64_t total = w->e * w->n;
    pf_range pr = {NULL, 0};
    if (r_next < total) {
        int64_t n = total - r_next < rows ? total - r_next : rows;
        size_t st = row_stride(w);
        pr.base = (const char *)w->data + (size_t)r_next * st;
        pr.len = (size_t)(n - 1) * st + mf_tensor_row_bytes(w->type, w->k);
    }
    return pr;
}

/* The same rows' MLX scales or biases (consecutive too). */
AI pf_range pf_params(const mf_tensor *w, const void *arr, pf_range rows)
{
    pf_range pr = {NULL, 0};
    if (rows.len && is_mlx(w->type)) {
        const size_t st = row_stride(w), rb = mf_tensor_row_bytes(w->type, w->k);
        const size_t ps = (size_t)(w->k / w->group_size) *
                          (w->scale_type == MF_TYPE_F32 ? 4u : 2u);
        size_t first = (size_t)(rows.base - (const char *)w->data) / st;
        size_t n = (rows.len - rb) / st + 1;
        pr.base = (const char *)arr + first * ps;
        pr.len = n * ps;
    }
    return pr;
}

AI void pf_step(pf_range pr, int64_t b, int64_t nb)
{
    if (!pr.len)
        return;
    size_t lo = pr.len * (size_t)b / (size_t)nb;
    size_t hi = pr.len * (size_t)(b + 1) / (size_t)nb;
    for (size_t o = lo & ~(size_t)63; o < hi; o += 64)
        _mm_prefetch(pr.base + o, _MM_HINT_T0);
}
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
        if (t == MF_TYPE_Q4_0)
            tb = _mm512_set1_ps(ld_f16(row + 18 * c));
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

/* MLX 4-bit chunk c split by parity: *ev the even elements 0, 2 .. 30 (the
 * low nibbles, in byte order), *od the odd ones. The dot products pair them
 * with the activations split the same way (x_parity), which costs two
 * permutes per activation row instead of four per weight row. */
AI void decode32_mlx4_eo(const unsigned char *row, int64_t c, __m512 tbl,
                         __m512 *ev, __m512 *od)
{
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + 16 * c)));
    *ev = _mm512_permutexvar_ps(v, tbl);
    *od = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tbl);
}

AI void x_parity(__m512 *lo, __m512 *hi)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512 e = _mm512_permutex2var_ps(*lo, ev, *hi);
    *hi = _mm512_permutex2var_ps(*lo, od, *hi);
    *lo = e;
}

/* Q4_0 block scales d of blocks c .. c+3 of a row (c + 3 < K / 32): one
 * 64-byte load, the four words 18 bytes apart gathered by one permute and
 * widened together; stored for broadcast loads (cheaper here than one
 * f16 conversion per block). */
AI void q4_0_d4(const unsigned char *row, int64_t c, float *out)
{
    const __m512i idx = _mm512_castsi128_si512(_mm_setr_epi16(0, 9, 18, 27, 0, 0, 0, 0));
    __m512i v = _mm512_permutexvar_epi16(idx, _mm512_loadu_si512(row + 18 * c));
    _mm_storeu_ps(out, _mm_cvtph_ps(_mm512_castsi512_si128(v)));
}

/* Rows r .. r+R-1 (absolute) against activation rows x[0 .. MB); results to
 * y[m][i .. i+R). Two accumulators per output when few outputs share the
 * tile, so the FMA chains stay independent. */
AI void qtile(int t, int R, int MB, const mf_tensor *w, int64_t r,
              const float *const *x, float *const *y, int64_t i, pf_range pr)
{
    const int64_t K = w->k, nc = K / 32;
    const size_t st = row_stride(w);
    const int D = R * MB <= 4 ? 2 : 1;
    const unsigned char *p[8];
    __m512 acc[8][4][2], ta[8], tb[8], wl[8], wh[8];
    _Alignas(16) float d4[8][4], s4[8][4], b4[8][4];
    for (int rr = 0; rr < R; rr++) {
        p[rr] = (const unsigned char *)w->data + (size_t)(r + rr) * st;
        ta[rr] = tb[rr] = _mm512_setzero_ps();
        for (int m = 0; m < MB; m++)
            acc[rr][m][0] = acc[rr][m][1] = _mm512_setzero_ps();
    }
    const int64_t cpg = is_mlx(t) ? w->group_size / 32 : 1;
    const size_t ng = is_mlx(t) ? (size_t)(K / w->group_size) : 0;
    size_t g = 0; /* group of the row */
    int64_t left = 0;
    for (int64_t c = 0; c < nc; c++) {
        pf_step(pr, c, nc);
        if (is_mlx(t) && left-- == 0) {
            /* four groups' parameters per row at a time, widened together */
            if ((g & 3) == 0) {
                int n = ng - g < 4 ? (int)(ng - g) : 4;
                for (int rr = 0; rr < R; rr++) {
                    size_t gi = (size_t)(r + rr) * ng + g;
                    mlx_param4(w->scale_type, w->scales, gi, n, s4[rr]);
                    mlx_param4(w->scale_type, w->biases, gi, n, b4[rr]);
                }
            }
            for (int rr = 0; rr < R; rr++)
                mlx_group_sb(t, _mm512_set1_ps(s4[rr][g & 3]),
                             _mm512_set1_ps(b4[rr][g & 3]), &ta[rr], &tb[rr]);
            g++;
            left = cpg - 1;
        }
        if (t == MF_TYPE_Q4_0) {
            if ((c & 3) == 0 && c + 3 < nc)
                for (int rr = 0; rr < R; rr++)
                    q4_0_d4(p[rr], c, d4[rr]);
            for (int rr = 0; rr < R; rr++)
                tb[rr] = (nc & ~(int64_t)3) > c ? _mm512_set1_ps(d4[rr][c & 3])
                                                : _mm512_set1_ps(ld_f16(p[rr] + 18 * c));
        }
        for (int rr = 0; rr < R; rr++) {
            if (t == MF_TYPE_MLX_Q4)
                decode32_mlx4_eo(p[rr], c, ta[rr], &wl[rr], &wh[rr]);
            else
                decode32(t, p[rr], c, ta[rr], tb[rr], &wl[rr], &wh[rr]);
        }
        for (int m = 0; m < MB; m++) {
            __m512 xl = _mm512_loadu_ps(x[m] + 32 * c);
            __m512 xh = _mm512_loadu_ps(x[m] + 32 * c + 16);
            if (t == MF_TYPE_MLX_Q4)
                x_parity(&xl, &xh);
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
 * inside each tile; the first chunk's pass prefetches the tile after next
 * (a little more distance than the next one measured better). M = 1 takes
 * tiles of 8 rows: more rows in flight, cold Q4_0 19 -> 24 GB/s. */
AI void qdot_t(int t, const mf_tensor *w, int64_t r0, int64_t nr,
               const float *const *x, int M, float *const *y)
{
    const pf_range none = {NULL, 0};
    int64_t i = 0;
    if (M == 1)
        for (; i + 8 <= nr; i += 8)
            qtile(t, 8, 1, w, r0 + i, x, y, i, pf_next(w, r0 + i + 16, 8));
    for (; i + 4 <= nr; i += 4)
        for (int m0 = 0; m0 < M; m0 += 4) {
            pf_range pr = m0 ? none : pf_next(w, r0 + i + 8, 4);
            switch (M - m0) {
            case 1: qtile(t, 4, 1, w, r0 + i, x + m0, y + m0, i, pr); break;
            case 2: qtile(t, 4, 2, w, r0 + i, x + m0, y + m0, i, pr); break;
            case 3: qtile(t, 4, 3, w, r0 + i, x + m0, y + m0, i, pr); break;
            default: qtile(t, 4, 4, w, r0 + i, x + m0, y + m0, i, pr); break;
            }
        }
    for (; i < nr; i++)
        for (int m0 = 0; m0 < M; m0 += 4) {
            switch (M - m0) {
            case 1: qtile(t, 1, 1, w, r0 + i, x + m0, y + m0, i, none); break;
            case 2: qtile(t, 1, 2, w, r0 + i, x + m0, y + m0, i, none); break;
            case 3: qtile(t, 1, 3, w, r0 + i, x + m0, y + m0, i, none); break;
            default: qtile(t, 1, 4, w, r0 + i, x + m0, y + m0, i, none); break;
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

/* ---------------------------------------------------------- quantize_q8 -- */

/* Bit-identical to the reference: absmax found on the magnitude bits (NaN
 * and Inf compare above every finite value), d = absmax / 127, q = x / d
 * rounded to nearest even (the default MXCSR mode) and clamped. */
static void avx512_quantize_q8(const float *x, int64_t K, mf_q8blk *out)
{
    const __m512i mag = _mm512_set1_epi32(0x7fffffff);
    for (int64_t b = 0; b < K / 32; b++) {
        __m512 a = _mm512_loadu_ps(x + 32 * b);
        __m512 c = _mm512_loadu_ps(x + 32 * b + 16);
        __m512i m = _mm512_max_epu32(_mm512_and_si512(_mm512_castps_si512(a), mag),
                                     _mm512_and_si512(_mm512_castps_si512(c), mag));
        uint32_t amax = _mm512_reduce_max_epu32(m);
        mf_q8blk *o = &out[b];
        if (amax >= 0x7f800000u) {
            memset(o->q, 0, sizeof o->q);
            o->d = o->s = NAN;
            continue;
        }
        float am;
        memcpy(&am, &amax, 4);
        float d = am / 127.0f;
        o->d = d;
        if (d == 0.0f) {
            memset(o->q, 0, sizeof o->q);
            o->s = 0.0f;
            continue;
        }
        const __m512 vd = _mm512_set1_ps(d);
        const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
        __m512i qa = _mm512_cvtps_epi32(_mm512_div_ps(a, vd));
        __m512i qc = _mm512_cvtps_epi32(_mm512_div_ps(c, vd));
        qa = _mm512_min_epi32(_mm512_max_epi32(qa, lo), hi);
        qc = _mm512_min_epi32(_mm512_max_epi32(qc, lo), hi);
        _mm_storeu_si128((__m128i *)(void *)o->q, _mm512_cvtepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(void *)(o->q + 16), _mm512_cvtepi32_epi8(qc));
        o->s = d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(qa, qc));
    }
}

/* --------------------------------------------------------- qdot_q8 INT8 -- */

/* Lane L of a tile register belongs to row rowperm(L) of the tile: the
 * in-lane 4x4 transposes below put row 4k + l in lane 4l + k. The map is
 * its own inverse. */
AI __m512i rowperm(void)
{
    return _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11,
                             15);
}

/* Bytes [off, off + 16) of 16 rows -> 4 registers: register t, lane L holds
 * bytes 4t .. 4t+3 of row rowperm(L). */
AI void tr16(const unsigned char *const *p, size_t off, __m512i out[4])
{
    __m512i z[4];
    for (int k = 0; k < 4; k++) {
        z[k] = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p[4 * k] + off)));
        z[k] = _mm512_inserti32x4(z[k], _mm_loadu_si128((const __m128i *)(p[4 * k + 1] + off)), 1);
        z[k] = _mm512_inserti32x4(z[k], _mm_loadu_si128((const __m128i *)(p[4 * k + 2] + off)), 2);
        z[k] = _mm512_inserti32x4(z[k], _mm_loadu_si128((const __m128i *)(p[4 * k + 3] + off)), 3);
    }
    __m512i a0 = _mm512_unpacklo_epi32(z[0], z[1]);
    __m512i a1 = _mm512_unpackhi_epi32(z[0], z[1]);
    __m512i a2 = _mm512_unpacklo_epi32(z[2], z[3]);
    __m512i a3 = _mm512_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm512_unpacklo_epi64(a0, a2);
    out[1] = _mm512_unpackhi_epi64(a0, a2);
    out[2] = _mm512_unpacklo_epi64(a1, a3);
    out[3] = _mm512_unpackhi_epi64(a1, a3);
}

/* The 16-bit or 32-bit float at byte offset off[L] from base, per lane.
 * Gathered when the offsets fit in 32 bits and no lane would read before
 * base (a 16-bit value is fetched as the high half of the 4 bytes ending
 * at it), else loaded one by one. */
AI __m512 gather_param(mf_type st, const unsigned char *base, const size_t *off,
                       __m512i voff, int gather_ok)
{
    if (gather_ok) {
        if (st == MF_TYPE_F32)
            return _mm512_i32gather_ps(voff, base, 1);
        __m512i v = _mm512_i32gather_epi32(
            _mm512_sub_epi32(voff, _mm512_set1_epi32(2)), base, 1);
        v = _mm512_srli_epi32(v, 16);
        if (st == MF_TYPE_BF16)
            return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
    }
    float f[16];
    for (int L = 0; L < 16; L++) {
        if (st == MF_TYPE_F32)
            memcpy(&f[L], base + off[L], 4);
        else if (st == MF_TYPE_F16)
            f[L] = ld_f16(base + off[L]);
        else {
            uint16_t h;
            memcpy(&h, base + off[L], 2);
            uint32_t u = (uint32_t)h << 16;
            memcpy(&f[L], &u, 4);
        }
    }
    return _mm512_loadu_ps(f);
}

/* Word indices for t16x4: the second level keeps words 0..7 of each
 * source, the third words 0..15; the last one maps (row, value j) to lane
 * order, values 0, 1 into the first result and 2, 3 into the second. */
static const int16_t k_t16_i2[32] = {0, 1, 2, 3, 4, 5, 6, 7, 32, 33, 34, 35, 36, 37, 38, 39};
static const int16_t k_t16_i3[32] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                     32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47};
static const int16_t k_t16_a[32] = {0, 16, 32, 48, 4, 20, 36, 52, 8, 24, 40, 56, 12, 28, 44, 60,
                                    1, 17, 33, 49, 5, 21, 37, 53, 9, 25, 41, 57, 13, 29, 45, 61};
static const int16_t k_t16_b[32] = {2, 18, 34, 50, 6, 22, 38, 54, 10, 26, 42, 58, 14, 30, 46, 62,
                                    3, 19, 35, 51, 7, 23, 39, 55, 11, 27, 43, 59, 15, 31, 47, 63};
/* First-level sources: the four d of Q4_0 blocks b..b+3 within a 64-byte
 * load at block b (words 0, 9, 18, 27); Q8_0's pair of loads at blocks b and
 * b+2 (words 0 and 17 of each); four consecutive words. */
static const int16_t k_t16_q4_0[32] = {0, 9, 18, 27, 32, 41, 50, 59};
static const int16_t k_t16_q8_0[32] = {0, 17, 32, 49};
static const int16_t k_t16_seq[32] = {0, 1, 2, 3, 32, 33, 34, 35};

/* Four 16-bit values of each of 16 rows, R[i] holding row i's values
 * 0..3 in words pos[0..3] (idx1 = pos, 32 + pos), regrouped by value: *f0
 * holds value 0 of the 16 rows in lane order in its low half and value 1
 * in its high half; *f1 values 2 and 3. A tree of 16 two-source word
 * permutes per four blocks costs less here than one 16-lane gather per
 * block. */
AI void t16x4(const __m512i R[16], __m512i idx1, __m512i *f0, __m512i *f1)
{
    const __m512i i2 = _mm512_loadu_si512(k_t16_i2), i3 = _mm512_loadu_si512(k_t16_i3);
    __m512i P[8], Q[4], S[2];
    for (int i = 0; i < 8; i++)
        P[i] = _mm512_permutex2var_epi16(R[2 * i], idx1, R[2 * i + 1]);
    for (int i = 0; i < 4; i++)
        Q[i] = _mm512_permutex2var_epi16(P[2 * i], i2, P[2 * i + 1]);
    for (int i = 0; i < 2; i++)
        S[i] = _mm512_permutex2var_epi16(Q[2 * i], i3, Q[2 * i + 1]);
    *f0 = _mm512_permutex2var_epi16(S[0], _mm512_loadu_si512(k_t16_a), S[1]);
    *f1 = _mm512_permutex2var_epi16(S[0], _mm512_loadu_si512(k_t16_b), S[1]);
}

/* The four 16-bit float groups of t16x4's results widened to f32. */
AI void t16x4_widen(mf_type st, __m512i f0, __m512i f1, __m512 out[4])
{
    __m256i h[4] = {_mm512_castsi512_si256(f0), _mm512_extracti64x4_epi64(f0, 1),
                    _mm512_castsi512_si256(f1), _mm512_extracti64x4_epi64(f1, 1)};
    for (int j = 0; j < 4; j++)
        out[j] = st == MF_TYPE_F16
                     ? _mm512_cvtph_ps(h[j])
                     : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h[j]), 16));
}

/* The f16 scales d of blocks b .. b+3 (b + 3 < K / 32) of ggml rows
 * p[0..15], in lane order: one 64-byte load per row for Q4_0 (the four d
 * sit 18 bytes apart), two for Q8_0. */
AI void ggml_scales4(int t, const unsigned char *const *p, int64_t b, __m512 dw[4])
{
    __m512i R[16], f0, f1;
    if (t == MF_TYPE_Q4_0) {
        for (int i = 0; i < 16; i++)
            R[i] = _mm512_loadu_si512(p[i] + 18 * b);
        t16x4(R, _mm512_loadu_si512(k_t16_q4_0), &f0, &f1);
    } else {
        const __m512i i0 = _mm512_loadu_si512(k_t16_q8_0);
        for (int i = 0; i < 16; i++)
            R[i] = _mm512_permutex2var_epi16(_mm512_loadu_si512(p[i] + 34 * b), i0,
                                             _mm512_loadu_si512(p[i] + 34 * b + 68));
        t16x4(R, _mm512_loadu_si512(k_t16_seq), &f0, &f1);
    }
    t16x4_widen(MF_TYPE_F16, f0, f1, dw);
}

/* MLX scales (or biases) of groups g .. g+3 of 16 rows whose parameters
 * start at arr + prow[i] (natural row order; element offsets), 16-bit
 * types: masked loads never touch groups past the row's last one (n < 4
 * left), whose lanes come out as zero. */
AI void mlx_params4(mf_type st, const unsigned char *arr, const size_t *prow,
                    size_t g, int n, __m512 out[4])
{
    __m512i R[16], f0, f1;
    const __mmask8 mk = (__mmask8)((1u << n) - 1u);
    for (int i = 0; i < 16; i++)
        R[i] = _mm512_castsi128_si512(_mm_maskz_loadu_epi16(mk, arr + 2 * (prow[i] + g)));
    t16x4(R, _mm512_loadu_si512(k_t16_seq), &f0, &f1);
    t16x4_widen(st, f0, f1, out);
}

/* sum(q) of an activation block, exact: s = d * sum(q) was rounded once
 * and |sum| < 2^12, so s / d rounds back to it. 0 when d is 0 or NaN. */
AI int32_t q8_sum(const mf_q8blk *xb)
{
    return xb->d > 0.0f ? (int32_t)lrintf(xb->s / xb->d) : 0;
}

/* 16 rows r .. r+15 (rows past r + nv - 1 repeat that row and are not
 * stored) against M quantized activation rows; results to y[m][i ..
 * i + nv). MB > 0: M == MB known here (accumulators in registers). */
AI void q8tile(int t, int MB, const mf_tensor *w, int64_t r, int nv,
               const mf_q8blk *const *xq, int M, float *const *y, int64_t i,
               pf_range pr)
{
    if (MB)
        M = MB;
    const size_t st = row_stride(w);
    const int64_t K = w->k, nb = K / 32;
    const unsigned char *p[16];
    size_t roff[16];
    for (int j = 0; j < 16; j++) {
        size_t rr = (size_t)(j < nv ? j : nv - 1);
        p[j] = (const unsigned char *)w->data + (size_t)(r + (int64_t)rr) * st;
    }
    /* per-lane offsets, in lane order */
    const int perm[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
    const int mlx = is_mlx(t);
    const size_t ng = mlx ? (size_t)(K / w->group_size) : 0;
    const size_t psz = w->scale_type == MF_TYPE_F32 ? 4 : 2;
    int32_t o32[16];
    size_t prow[16]; /* MLX: first parameter of each row, natural order */
    for (int j = 0; j < 16; j++)
        prow[j] = (size_t)(r + (j < nv ? j : nv - 1)) * ng;
    for (int L = 0; L < 16; L++) {
        size_t rr = (size_t)(perm[L] < nv ? perm[L] : nv - 1);
        roff[L] = mlx ? rr * ng * psz : rr * st;
        o32[L] = (int32_t)(roff[L] & 0x7fffffff);
    }
    const __m512i voff = _mm512_loadu_si512(o32);
    const int off_fit = (mlx ? 16 * ng * psz : 16 * st) <= 0x7fffffffu;
    const __m512i nib = _mm512_set1_epi8(0x0f), flip = _mm512_set1_epi8((char)0x80);
    const __m256i shuf = _mm256_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15,
                                          0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
    const int32_t off8 = t == MF_TYPE_Q4_0 ? 8 : 128;
    __m512 yacc[32], sc = _mm512_setzero_ps(), bi = _mm512_setzero_ps();
    for (int m = 0; m < M; m++)
        yacc[m] = _mm512_setzero_ps();
    const int64_t bpg = mlx ? w->group_size / 32 : 1;
    const pf_range prs = pf_params(w, w->scales, pr), prb = pf_params(w, w->biases, pr);
    int64_t left = 0;
    size_t g = 0;
    _Alignas(32) int8_t xs[32];
    __m512 dw4[4], sc4[4], bi4[4];
    for (int64_t b = 0; b < nb; b++) {
        __m512i V[8], T[4], U[4];
        __m512 dw = _mm512_setzero_ps();
        pf_step(pr, b, nb);
        if (mlx) {
            pf_step(prs, b, nb);
            pf_step(prb, b, nb);
        }
        switch (t) {
        case MF_TYPE_Q4_0:
            tr16(p, (size_t)b * 18 + 2, T);
            for (int k = 0; k < 4; k++) {
                V[k] = _mm512_and_si512(T[k], nib);
                V[4 + k] = _mm512_and_si512(_mm512_srli_epi32(T[k], 4), nib);
            }
            break;
        case MF_TYPE_Q8_0:
            tr16(p, (size_t)b * 34 + 2, T);
            tr16(p, (size_t)b * 34 + 18, U);
            for (int k = 0; k < 4; k++) {
                V[k] = _mm512_xor_si512(T[k], flip); /* w + 128, unsigned */
                V[4 + k] = _mm512_xor_si512(U[k], flip);
            }
            break;
        case MF_TYPE_MLX_Q4:
            tr16(p, (size_t)b * 16, T);
            for (int k = 0; k < 4; k++) {
                V[2 * k] = _mm512_and_si512(T[k], nib); /* even elements */
                V[2 * k + 1] = _mm512_and_si512(_mm512_srli_epi32(T[k], 4), nib);
            }
            break;
        default: /* MF_TYPE_MLX_Q8 */
            tr16(p, (size_t)b * 32, T);
            tr16(p, (size_t)b * 32 + 16, U);
            for (int k = 0; k < 4; k++) {
                V[k] = T[k];
                V[4 + k] = U[k];
            }
            break;
        }
        if (!mlx && b + 3 < nb) {
            if ((b & 3) == 0)
                ggml_scales4(t, p, b, dw4);
            dw = dw4[b & 3];
        } else if (!mlx) { /* the last K / 32 % 4 blocks */
            const unsigned char *db = p[0] + (size_t)b * (t == MF_TYPE_Q4_0 ? 18 : 34);
            if (off_fit) {
                __m512i h = _mm512_i32gather_epi32(voff, db, 1); /* d + 2 code bytes */
                dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
            } else {
                dw = gather_param(MF_TYPE_F16, db, roff, voff, 0);
            }
        } else if (left-- == 0) {
            if (w->scale_type != MF_TYPE_F32) {
                if ((g & 3) == 0) {
                    int n = ng - g < 4 ? (int)(ng - g) : 4;
                    mlx_params4(w->scale_type, (const unsigned char *)w->scales, prow, g, n, sc4);
                    mlx_params4(w->scale_type, (const unsigned char *)w->biases, prow, g, n, bi4);
                }
                sc = sc4[g & 3];
                bi = bi4[g & 3];
            } else {
                size_t gi = (size_t)r * ng + g;
                sc = gather_param(MF_TYPE_F32, (const unsigned char *)w->scales + gi * 4,
                                  roff, voff, off_fit);
                bi = gather_param(MF_TYPE_F32, (const unsigned char *)w->biases + gi * 4,
                                  roff, voff, off_fit);
            }
            g++;
            left = bpg - 1;
        }
        for (int m = 0; m < M; m++) {
            const mf_q8blk *xb = &xq[m][b];
            const int8_t *xc = xb->q;
            if (t == MF_TYPE_MLX_Q4) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)xb->q);
                _mm256_store_si256((__m256i *)(void *)xs, _mm256_shuffle_epi8(v, shuf));
                xc = xs;
            }
            __m512i a0 = mlx ? _mm512_setzero_si512()
                             : _mm512_set1_epi32(-off8 * q8_sum(xb));
            __m512i a1 = _mm512_setzero_si512();
            for (int k = 0; k < 8; k++) {
                __m512i xv = _mm512_set1_epi32((int32_t)ld_u32(xc + 4 * k));
                if (M <= 2 && (k & 1))
                    a1 = _mm512_dpbusd_epi32(a1, V[k], xv);
                else
                    a0 = _mm512_dpbusd_epi32(a0, V[k], xv);
            }
            __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1));
            __m512 dx = _mm512_set1_ps(xb->d);
            if (mlx) {
                yacc[m] = _mm512_fmadd_ps(f, _mm512_mul_ps(sc, dx), yacc[m]);
                yacc[m] = _mm512_fmadd_ps(bi, _mm512_set1_ps(xb->s), yacc[m]);
            } else {
                yacc[m] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, dx), yacc[m]);
            }
        }
    }
    const __mmask16 keep = (__mmask16)((1u << nv) - 1u);
    for (int m = 0; m < M; m++)
        _mm512_mask_storeu_ps(y[m] + i, keep,
                              _mm512_permutexvar_ps(rowperm(), yacc[m]));
}

AI void qdot_q8_t(int t, const mf_tensor *w, int64_t r0, int64_t nr,
                  const mf_q8blk *const *xq, int M, float *const *y)
{
    const pf_range none = {NULL, 0};
    for (int64_t i = 0; i < nr; i += 16) {
        int nv = nr - i < 16 ? (int)(nr - i) : 16;
        for (int m0 = 0; m0 < M; m0 += 32) {
            int mc = M - m0 < 32 ? M - m0 : 32;
            pf_range pr = m0 ? none : pf_next(w, r0 + i + 16, 16);
            switch (mc) {
            case 1: q8tile(t, 1, w, r0 + i, nv, xq + m0, 1, y + m0, i, pr); break;
            case 2: q8tile(t, 2, w, r0 + i, nv, xq + m0, 2, y + m0, i, pr); break;
            case 3: q8tile(t, 3, w, r0 + i, nv, xq + m0, 3, y + m0, i, pr); break;
            case 4: q8tile(t, 4, w, r0 + i, nv, xq + m0, 4, y + m0, i, pr); break;
            default: q8tile(t, 0, w, r0 + i, nv, xq + m0, mc, y + m0, i, pr); break;
            }
        }
    }
}

#define QDOT_Q8_FN(name, T)                                               \
    static void name(const mf_tensor *w, int64_t r0, int64_t nr,          \
                     const mf_q8blk *const *xq, int M, float *const *y)   \
    {                                                                     \
        qdot_q8_t(T, w, r0, nr, xq, M, y);                                \
    }
QDOT_Q8_FN(qdot_q8_q4_0, MF_TYPE_Q4_0)
QDOT_Q8_FN(qdot_q8_q8_0, MF_TYPE_Q8_0)
QDOT_Q8_FN(qdot_q8_mlx4, MF_TYPE_MLX_Q4)
QDOT_Q8_FN(qdot_q8_mlx8, MF_TYPE_MLX_Q8)

static void avx512_qdot_q8(const mf_tensor *w, int64_t r0, int64_t nr,
                           const mf_q8blk *const *xq, int M, float *const *y)
{
    switch (w->type) {
    case MF_TYPE_Q4_0: qdot_q8_q4_0(w, r0, nr, xq, M, y); break;
    case MF_TYPE_Q8_0: qdot_q8_q8_0(w, r0, nr, xq, M, y); break;
    case MF_TYPE_MLX_Q4: qdot_q8_mlx4(w, r0, nr, xq, M, y); break;
    default: qdot_q8_mlx8(w, r0, nr, xq, M, y); break;
    }
}

void mf_avx512_init_quant(mf_kernels *k)
{
    k->dequant_row = avx512_dequant_row;
    k->qdot = avx512_qdot;
    k->quantize_q8 = avx512_quantize_q8;
    k->qdot_q8 = avx512_qdot_q8;
}
