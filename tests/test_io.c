/* Model files: GGUF and safetensors written by the test itself, valid and
 * malformed; a safetensors header of a real model's size (5,000 tensors) and
 * headers past the reader's limits; a mutation fuzz of both readers; one
 * layer's weights loaded and checked against what was written. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <moefuse/io.h>

#include "common.h"

/* ---- a tiny byte buffer ---------------------------------------------------- */
typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put64(buf *b, uint64_t v) { put(b, &v, 8); }
static void putstr(buf *b, const char *s)
{
    put64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad(buf *b, size_t al)
{
    static const unsigned char z[64];
    while (b->n % al)
        put(b, z, 1);
}

/* ---- GGUF ------------------------------------------------------------------- */
typedef struct gt {
    const char *name;
    uint32_t type; /* ggml id */
    int nd;
    uint64_t ne[4]; /* ne0 innermost */
    const void *data;
    size_t bytes;
} gt;

static buf gguf_make(const gt *t, int n, uint32_t alignment)
{
    buf b = {0};
    put32(&b, 0x46554747u);
    put32(&b, 3);
    put64(&b, (uint64_t)n);
    put64(&b, 3); /* kv: an array, a string, the alignment */
    putstr(&b, "general.architecture");
    put32(&b, 8);
    putstr(&b, "qwen3moe");
    putstr(&b, "tokenizer.ggml.scores");
    put32(&b, 9);
    put32(&b, 6);
    put64(&b, 3);
    float sc[3] = {1, 2, 3};
    put(&b, sc, sizeof sc);
    putstr(&b, "general.alignment");
    put32(&b, 4);
    put32(&b, alignment);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        putstr(&b, t[i].name);
        put32(&b, (uint32_t)t[i].nd);
        for (int d = 0; d < t[i].nd; d++) /* extents past ne[3]: 1 */
            put64(&b, d < 4 ? t[i].ne[d] : 1);
        put32(&b, t[i].type);
        put64(&b, off);
        off += (t[i].bytes + alignment - 1) / alignment * alignment;
    }
    pad(&b, alignment);
    for (int i = 0; i < n; i++) {
        put(&b, t[i].data, t[i].bytes);
        pad(&b, alignment);
    }
    return b;
}

/* A small Qwen3-style layer: E=4, H=64, F=32, Q4_0 stacks, f32 router. */
#define E_ 4
#define H_ 64
#define F_ 32

typedef struct layer_data {
    mft_qtensor gate, up, down;
    float router[E_ * H_];
    gt t[4];
} layer_data;

static void layer_make(layer_data *L, mft_rng *r)
{
    L->gate = mft_qtensor_random(r, MF_TYPE_Q4_0, E_, F_, H_, 0, MF_TYPE_F32);
    L->up = mft_qtensor_random(r, MF_TYPE_Q4_0, E_, F_, H_, 0, MF_TYPE_F32);
    L->down = mft_qtensor_random(r, MF_TYPE_Q4_0, E_, H_, F_, 0, MF_TYPE_F32);
    mft_fill_normal(r, L->router, E_ * H_, 0.1f);
    size_t gb = (size_t)E_ * F_ * (H_ / 32) * 18, db = (size_t)E_ * H_ * (F_ / 32) * 18;
    L->t[0] = (gt){"blk.3.ffn_gate_inp.weight", 0, 2, {H_, E_}, L->router, sizeof L->router};
    L->t[1] = (gt){"blk.3.ffn_gate_exps.weight", 2, 3, {H_, F_, E_}, L->gate.data, gb};
    L->t[2] = (gt){"blk.3.ffn_up_exps.weight", 2, 3, {H_, F_, E_}, L->up.data, gb};
    L->t[3] = (gt){"blk.3.ffn_down_exps.weight", 2, 3, {F_, H_, E_}, L->down.data, db};
}

static void layer_free(layer_data *L)
{
    mft_qtensor_free(&L->gate);
    mft_qtensor_free(&L->up);
    mft_qtensor_free(&L->down);
}

static mf_moe_config small_cfg(void)
{
    mf_moe_config c;
    cr_assert_eq(mf_moe_preset("qwen3-30b-a3b", &c), MF_OK);
    c.hidden = H_;
    c.expert_ffn = F_;
    c.n_experts = E_;
    c.top_k = 2;
    return c;
}

Test(io, gguf_layer_round_trip)
{
    mft_rng r = mft_rng_make(__LINE__);
    layer_data L;
    layer_make(&L, &r);
    buf b = gguf_make(L.t, 4, 32);
    char path[] = "/tmp/moefuse_io_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, b.p, b.n), (ssize_t)b.n);
    close(fd);
    mf_model_file *f = NULL;
    cr_assert_eq(mf_model_file_open(path, &f), MF_OK);
    unlink(path);
    cr_expect_str_eq(mf_model_file_format(f), "gguf");
    cr_expect_eq(mf_model_file_count(f), 4);
    cr_expect_str_eq(mf_model_file_name(f, 1), "blk.3.ffn_gate_exps.weight");
    cr_expect_null(mf_model_file_name(f, 4));
    mf_moe_config c = small_cfg();
    mf_moe_weights w;
    cr_assert_eq(mf_moe_weights_load(f, 3, &c, &w), MF_OK);
    cr_expect_eq(w.gate.type, MF_TYPE_Q4_0);
    cr_expect_eq(w.gate.e, E_);
    cr_expect_eq(w.gate.n, F_);
    cr_expect_eq(w.gate.k, H_);
    cr_expect_eq(w.down.n, H_);
    cr_expect_eq(w.down.k, F_);
    cr_expect_eq(memcmp(w.gate.data, L.gate.data, (size_t)E_ * F_ * 2 * 18), 0);
    cr_expect_eq(memcmp(w.router.data, L.router, sizeof L.router), 0);
    cr_expect_eq(w.router.type, MF_TYPE_F32);
    /* wrong layer, wrong shapes, biases the file lacks */
    mf_moe_weights keep = w;
    cr_expect_eq(mf_moe_weights_load(f, 2, &c, &w), MF_ERR_INVALID_ARG);
    c.expert_ffn = 64;
    cr_expect_eq(mf_moe_weights_load(f, 3, &c, &w), MF_ERR_INVALID_ARG);
    c = small_cfg();
    c.router_bias = 1;
    cr_expect_eq(mf_moe_weights_load(f, 3, &c, &w), MF_ERR_INVALID_ARG);
    cr_expect_eq(memcmp(&keep, &w, sizeof w), 0, "output changed on error");
    c = small_cfg();
    c.gate_up_layout = MF_GLU_CONCAT;
    cr_expect_eq(mf_moe_weights_load(f, 3, &c, &w), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_weights_load(NULL, 3, &c, &w), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_weights_load(f, -1, &c, &w), MF_ERR_INVALID_ARG);
    mf_tensor t;
    cr_expect_eq(mf_model_file_tensor(f, "nope", 0, &t), MF_ERR_INVALID_ARG);
    mf_model_file_close(f);
    free(b.p);
    layer_free(&L);
}

Test(io, open_errors)
{
    mf_model_file *f = (mf_model_file *)0x1;
    cr_expect_eq(mf_model_file_open(NULL, &f), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_model_file_open("/nonexistent/x.gguf", &f), MF_ERR_IO);
    cr_expect_eq(mf_model_file_open("/tmp", &f), MF_ERR_IO);
    cr_expect_eq(mf_model_file_open_memory(NULL, 4, &f), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_model_file_open_memory("GGUF", 4, &f), MF_ERR_FILE_FORMAT);
    cr_expect_eq(mf_model_file_open_memory("xxxxxxxxxxxx", 12, &f), MF_ERR_FILE_FORMAT);
    cr_expect_eq(f, (mf_model_file *)0x1, "output written on error");
    mf_model_file_close(NULL);
}

Test(io, gguf_malformed)
{
    mft_rng r = mft_rng_make(__LINE__);
    layer_data L;
    layer_make(&L, &r);
    mf_model_file *f;
    /* a tensor whose data runs past the end */
    buf b = gguf_make(L.t, 4, 32);
    cr_expect_eq(mf_model_file_open_memory(b.p, b.n - 1, &f), MF_ERR_FILE_FORMAT);
    free(b.p);
    /* Q4_0 with ne0 not a multiple of 32 */
    gt bad = L.t[1];
    bad.ne[0] = 48;
    b = gguf_make(&bad, 1, 32);
    cr_expect_eq(mf_model_file_open_memory(b.p, b.n, &f), MF_ERR_FILE_FORMAT);
    free(b.p);
    /* 5 dimensions, zero dimension */
    bad = L.t[0];
    bad.nd = 5;
    b = gguf_make(&bad, 1, 32);
    cr_expect_eq(mf_model_file_open_memory(b.p, b.n, &f), MF_ERR_FILE_FORMAT);
    free(b.p);
    bad = L.t[0];
    bad.ne[1] = 0;
    b = gguf_make(&bad, 1, 32);
    cr_expect_eq(mf_model_file_open_memory(b.p, b.n, &f), MF_ERR_FILE_FORMAT);
    free(b.p);
    /* huge tensor count, version 1, alignment not a power of two */
    b = gguf_make(L.t, 1, 32);
    uint64_t huge = (uint64_t)1 << 60;
    memcpy(b.p + 8, &huge, 8);
    cr_expect_eq(mf_model_file_open_memory(b.p, b.n, &f), MF_ERR_FILE_FORMAT);
    free(b.p);
    b = gguf_make(L.t, 1, 32);
    uint32_t v1 = 1;
    memcpy(b.p + 4, &v1, 4);
    cr_expect_eq(mf_model_file_open_memory(b.p, b.n, &f), MF_ERR_FILE_FORMAT);
    free(b.p);
    b = gguf_make(L.t, 1, 24);
    cr_expect_eq(mf_model_file_open_memory(b.p, b.n, &f), MF_ERR_FILE_FORMAT);
    free(b.p);
    layer_free(&L);
}

/* ---- safetensors ------------------------------------------------------------ */
static buf st_make(const char *header, const void *data, size_t n)
{
    buf b = {0};
    size_t hl = strlen(header);
    size_t padded = (hl + 7) / 8 * 8;
    put64(&b, padded);
    put(&b, header, hl);
    while (b.n < 8 + padded)
        put(&b, " ", 1);
    put(&b, data, n);
    return b;
}

Test(io, safetensors_mlx_stack)
{
    /* E=2, N=3, K=64, 4-bit, group 32, bf16 scales: codes [2,3,8] u32,
     * scales/biases [2,3,2] bf16 */
    mft_rng r = mft_rng_make(__LINE__);
    mft_qtensor q = mft_qtensor_random(&r, MF_TYPE_MLX_Q4, 2, 3, 64, 32, MF_TYPE_BF16);
    unsigned char data[192 + 24 + 24 + 8];
    memcpy(data, q.data, 192);
    memcpy(data + 192, q.scales, 24);
    memcpy(data + 216, q.biases, 24);
    float bias2[2] = {0.5f, -1.0f};
    memcpy(data + 240, bias2, 8);
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"mlx\"},"
        "\"m.w.weight\":{\"dtype\":\"U32\",\"shape\":[2,3,8],\"data_offsets\":[0,192]},"
        "\"m.w.scales\":{\"dtype\":\"BF16\",\"shape\":[2,3,2],\"data_offsets\":[192,216]},"
        "\"m.w.biases\":{\"dtype\":\"BF16\",\"shape\":[2,3,2],\"data_offsets\":[216,240]},"
        "\"m.b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[240,248]},"
        "\"m.i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    buf b = st_make(hdr, data, sizeof data);
    mf_model_file *f;
    cr_assert_eq(mf_model_file_open_memory(b.p, b.n, &f), MF_OK);
    cr_expect_str_eq(mf_model_file_format(f), "safetensors");
    cr_expect_eq(mf_model_file_count(f), 4, "the I8 tensor is left out");
    mf_tensor t;
    cr_assert_eq(mf_model_file_tensor(f, "m.w", 64, &t), MF_OK);
    cr_expect_eq(t.type, MF_TYPE_MLX_Q4);
    cr_expect_eq(t.group_size, 32);
    cr_expect_eq(t.scale_type, MF_TYPE_BF16);
    cr_expect_eq(t.e, 2);
    cr_expect_eq(t.n, 3);
    cr_expect_eq(t.k, 64);
    cr_expect_eq(memcmp(t.data, q.data, 192), 0);
    cr_assert_eq(mf_model_file_tensor(f, "m.w.weight", 64, &t), MF_OK);
    cr_expect_eq(mf_model_file_tensor(f, "m.w", 0, &t), MF_ERR_INVALID_ARG, "K needed");
    cr_expect_eq(mf_model_file_tensor(f, "m.w", 48, &t), MF_ERR_FILE_FORMAT);
    cr_assert_eq(mf_model_file_tensor(f, "m.b", 0, &t), MF_OK);
    cr_expect_eq(t.type, MF_TYPE_F32);
    cr_expect_eq(t.k, 2);
    mf_model_file_close(f);
    free(b.p);
    /* offsets past the data, size mismatch, not JSON */
    const char *bad[] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,800]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}",
        "{\"a\":[1,2]}",
        "[1]",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b = st_make(bad[i], data, 8);
        cr_expect_eq(mf_model_file_open_memory(b.p, b.n, &f), MF_ERR_FILE_FORMAT, "case %zu", i);
        free(b.p);
    }
    mft_qtensor_free(&q);
}

/* A header the size of a real model's: 5,000 tensors in random order, one
 * MLX layer with real data among 4,991 two-element F16 tensors named like
 * the rest of a model. The file opens, the layer loads, every tensor is
 * found by name and points at its own bytes. */
#define MANY 5000
#define MLX_LAYER 7

typedef struct st_entry {
    char name[96];
    const char *dtype;
    int nd;
    int64_t shape[3];
    size_t off, bytes;
} st_entry;

static void json_entry(buf *h, const st_entry *e)
{
    char s[320];
    int n = snprintf(s, sizeof s, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                     h->n > 1 ? "," : "", e->name, e->dtype);
    for (int d = 0; d < e->nd; d++)
        n += snprintf(s + n, sizeof s - (size_t)n, "%s%lld", d ? "," : "",
                      (long long)e->shape[d]);
    n += snprintf(s + n, sizeof s - (size_t)n, "],\"data_offsets\":[%zu,%zu]}",
                  e->off, e->off + e->bytes);
    cr_assert_lt((size_t)n, sizeof s);
    put(h, s, (size_t)n);
}

Test(io, safetensors_many_tensors)
{
    mft_rng r = mft_rng_make(__LINE__);
    mft_qtensor q[3] = {
        mft_qtensor_random(&r, MF_TYPE_MLX_Q4, E_, F_, H_, 32, MF_TYPE_BF16),
        mft_qtensor_random(&r, MF_TYPE_MLX_Q4, E_, F_, H_, 32, MF_TYPE_BF16),
        mft_qtensor_random(&r, MF_TYPE_MLX_Q4, E_, H_, F_, 32, MF_TYPE_BF16)};
    static const char *proj[3] = {"gate_proj", "up_proj", "down_proj"};
    static st_entry ent[MANY];
    static unsigned char data[65536];
    float router[E_ * H_];
    mft_fill_normal(&r, router, E_ * H_, 0.1f);
    size_t off = 0;
    int n = 0;
    ent[n] = (st_entry){"", "F32", 2, {E_, H_}, off, sizeof router};
    snprintf(ent[n].name, sizeof ent[n].name, "model.layers.%d.mlp.gate.weight",
             MLX_LAYER);
    memcpy(data + off, router, sizeof router);
    off += sizeof router;
    n++;
    for (int p = 0; p < 3; p++) {
        int64_t rows = p < 2 ? F_ : H_, k = p < 2 ? H_ : F_;
        size_t cb = (size_t)(E_ * rows * k / 2), sb = (size_t)(E_ * rows * (k / 32) * 2);
        const void *src[3] = {q[p].data, q[p].scales, q[p].biases};
        static const char *part[3] = {"weight", "scales", "biases"};
        for (int j = 0; j < 3; j++) {
            st_entry *e = &ent[n++];
            *e = (st_entry){"", j ? "BF16" : "U32", 3,
                            {E_, rows, j ? k / 32 : k / 8}, off, j ? sb : cb};
            snprintf(e->name, sizeof e->name,
                     "model.layers.%d.mlp.switch_mlp.%s.%s", MLX_LAYER,
                     proj[p], part[j]);
            memcpy(data + off, src[j], e->bytes);
            off += (e->bytes + 63) / 64 * 64;
        }
    }
    int first_small = n;
    for (int i = 0; n < MANY; i++, n++) {
        st_entry *e = &ent[n];
        *e = (st_entry){"", "F16", 1, {2}, off, 4};
        snprintf(e->name, sizeof e->name,
                 "model.layers.%d.mlp.experts.%d.%s.weight", i / 384,
                 i / 3 % 128, proj[i % 3]);
        memcpy(data + off, &i, 4);
        off += 4;
    }
    cr_assert_leq(off, sizeof data);
    /* Entries in random order. */
    int perm[MANY];
    for (int i = 0; i < MANY; i++)
        perm[i] = i;
    for (int i = MANY - 1; i > 0; i--) {
        int j = (int)mft_int(&r, 0, i), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    buf h = {0};
    put(&h, "{", 1);
    for (int i = 0; i < MANY; i++) {
        if (i == MANY / 2) {
            const char *meta = ",\"__metadata__\":{\"format\":\"mlx\"}";
            put(&h, meta, strlen(meta));
        }
        json_entry(&h, &ent[perm[i]]);
    }
    put(&h, "}", 2); /* and the NUL */
    buf b = st_make((const char *)h.p, data, off);
    cr_log_info("safetensors header: %zu bytes, %d tensors", h.n - 1, MANY);
    free(h.p);
    char path[] = "/tmp/moefuse_io_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, b.p, b.n), (ssize_t)b.n);
    close(fd);
    mf_model_file *f = NULL;
    mf_status open_st = mf_model_file_open(path, &f);
    cr_assert_eq(open_st, MF_OK, "status %d", open_st);
    unlink(path);
    cr_assert_eq(mf_model_file_count(f), MANY);

    mf_moe_config c = small_cfg();
    mf_moe_weights w;
    cr_assert_eq(mf_moe_weights_load(f, MLX_LAYER, &c, &w), MF_OK);
    cr_expect_eq(memcmp(w.router.data, router, sizeof router), 0);
    const mf_tensor *st[3] = {&w.gate, &w.up, &w.down};
    for (int p = 0; p < 3; p++) {
        cr_expect_eq(st[p]->type, MF_TYPE_MLX_Q4, "%s", proj[p]);
        cr_expect_eq(st[p]->group_size, 32);
        cr_expect_eq(st[p]->e, E_);
        cr_expect_eq(st[p]->n, p < 2 ? F_ : H_);
        cr_expect_eq(st[p]->k, p < 2 ? H_ : F_);
        size_t cb = (size_t)(E_ * H_ * F_ / 2), sb = (size_t)(E_ * H_ * F_ / 32 * 2);
        cr_expect_eq(memcmp(st[p]->data, q[p].data, cb), 0, "%s", proj[p]);
        cr_expect_eq(memcmp(st[p]->scales, q[p].scales, sb), 0);
        cr_expect_eq(memcmp(st[p]->biases, q[p].biases, sb), 0);
    }
    cr_expect_eq(mf_moe_weights_load(f, MLX_LAYER + 1, &c, &w),
                 MF_ERR_INVALID_ARG, "no such layer");
    /* Every tensor by its name; the small ones hold their own number. */
    const unsigned char *base =
        (const unsigned char *)w.router.data - ent[0].off;
    int n_small = 0;
    mf_tensor t;
    for (int64_t i = 0; i < MANY; i++) {
        const char *nm = mf_model_file_name(f, i);
        cr_assert_not_null(nm);
        mf_status s = mf_model_file_tensor(f, nm, 0, &t);
        if (!strstr(nm, ".experts."))
            continue; /* the layer's own: loaded above */
        n_small++;
        cr_assert_eq(s, MF_OK, "%s", nm);
        cr_assert_eq(t.type, MF_TYPE_F16);
        cr_assert_eq(t.k, 2);
        int v;
        memcpy(&v, t.data, 4);
        cr_assert(v >= 0 && v < MANY - first_small, "%s: %d", nm, v);
        cr_assert_str_eq(ent[first_small + v].name, nm);
        cr_assert_eq((const unsigned char *)t.data,
                     base + ent[first_small + v].off, "%s", nm);
    }
    cr_expect_eq(n_small, MANY - first_small);
    /* A base name finds "<name>.weight"; names not in the file. */
    cr_expect_eq(mf_model_file_tensor(f, "model.layers.12.mlp.experts.0.up_proj", 0, &t),
                 MF_OK);
    cr_expect_eq(mf_model_file_tensor(f, "model.layers.13.mlp.experts.0.up_proj", 0, &t),
                 MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_model_file_tensor(f, "", 0, &t), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_model_file_tensor(f, "zzz", 0, &t), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_model_file_tensor(f, "model.layers.7.mlp", 0, &t),
                 MF_ERR_INVALID_ARG);
    mf_model_file_close(f);
    free(b.p);
    for (int p = 0; p < 3; p++)
        mft_qtensor_free(&q[p]);
}

/* Headers past the documented limits (io.h): nesting deeper than 32, more
 * JSON values than max(2^20, header bytes / 8), longer than 64 MiB, a
 * repeated tensor name among thousands: MF_ERR_FILE_FORMAT; just inside
 * each limit: MF_OK. */
static mf_status open_header(const char *hdr)
{
    unsigned char d[8] = {0};
    buf b = st_make(hdr, d, sizeof d);
    mf_model_file *f = NULL;
    mf_status st = mf_model_file_open_memory(b.p, b.n, &f);
    mf_model_file_close(f);
    free(b.p);
    return st;
}

Test(io, safetensors_header_limits)
{
    /* Depth: the root object and 31 arrays nest 32 deep. */
    for (int arrays = 31; arrays <= 32; arrays++) {
        char h[128];
        int n = snprintf(h, sizeof h, "{\"__metadata__\":");
        for (int i = 0; i < arrays; i++)
            h[n++] = '[';
        for (int i = 0; i < arrays; i++)
            h[n++] = ']';
        h[n++] = '}';
        h[n] = 0;
        cr_expect_eq(open_header(h), arrays == 31 ? MF_OK : MF_ERR_FILE_FORMAT,
                     "%d arrays", arrays);
    }
    /* Values: "[0,0,...]" spends 2 bytes a value, so the budget is the
     * floor 2^20: the root object and the array are 2 of them. */
    size_t floor_nodes = (size_t)1 << 20;
    char *h = malloc(2 * floor_nodes + 64);
    cr_assert_not_null(h);
    for (size_t zeros = floor_nodes - 2; zeros <= floor_nodes - 1; zeros++) {
        size_t n = (size_t)sprintf(h, "{\"__metadata__\":[");
        for (size_t i = 0; i < zeros; i++) {
            h[n++] = '0';
            h[n++] = ',';
        }
        memcpy(h + n - 1, "]}", 3);
        cr_expect_eq(open_header(h), zeros + 2 <= floor_nodes ? MF_OK : MF_ERR_FILE_FORMAT,
                     "%zu values", zeros + 2);
    }
    free(h);
    /* Length: 64 MiB of header (an empty object and spaces) is read, one
     * 8-byte step more is refused before parsing. */
    size_t cap = ((size_t)64 << 20) + 8;
    unsigned char *b = malloc(8 + cap + 8);
    cr_assert_not_null(b);
    memset(b + 8, ' ', cap + 8);
    b[8] = '{';
    b[9] = '}';
    for (size_t hl = cap - 8; hl <= cap; hl += 8) {
        uint64_t v = hl;
        memcpy(b, &v, 8);
        mf_model_file *f = NULL;
        mf_status st = mf_model_file_open_memory(b, 8 + cap + 8, &f);
        cr_expect_eq(st, hl < cap ? MF_OK : MF_ERR_FILE_FORMAT, "header %zu", hl);
        if (st == MF_OK)
            cr_expect_eq(mf_model_file_count(f), 0);
        mf_model_file_close(f);
    }
    free(b);
    /* A tensor name twice among 3,000: refused wherever the two are. */
    buf j = {0};
    put(&j, "{", 1);
    for (int i = 0; i < 3000; i++) {
        st_entry e = {"", "F32", 1, {1}, 0, 4};
        snprintf(e.name, sizeof e.name, "model.layers.%d.mlp.experts.%d.w",
                 i == 2900 ? 0 : i / 100, i == 2900 ? 7 : i % 100);
        json_entry(&j, &e);
    }
    put(&j, "}", 2);
    cr_expect_eq(open_header((const char *)j.p), MF_ERR_FILE_FORMAT);
    free(j.p);
}

/* Mutations and truncations of valid files: every result is a status; the
 * sanitizer build catches any read out of bounds. */
Test(io, fuzz_mutations)
{
    mft_rng r = mft_rng_make(__LINE__);
    layer_data L;
    layer_make(&L, &r);
    buf g = gguf_make(L.t, 4, 32);
    const char *hdr =
        "{\"m.w.weight\":{\"dtype\":\"U32\",\"shape\":[1,1,8],\"data_offsets\":[0,32]},"
        "\"m.w.scales\":{\"dtype\":\"F16\",\"shape\":[1,1,2],\"data_offsets\":[32,36]},"
        "\"m.w.biases\":{\"dtype\":\"F16\",\"shape\":[1,1,2],\"data_offsets\":[36,40]}}";
    unsigned char zeros[40] = {0};
    buf s = st_make(hdr, zeros, sizeof zeros);
    const buf *src[2] = {&g, &s};
    int ok = 0, bad = 0;
    for (int it = 0; it < 4000; it++) {
        const buf *b = src[it & 1];
        size_t n = b->n;
        unsigned char *p = malloc(n);
        memcpy(p, b->p, n);
        int kind = (int)mft_int(&r, 0, 2);
        if (kind == 0) { /* truncate */
            n = (size_t)mft_int(&r, 0, (int64_t)n);
        } else { /* flip bytes, biased toward the header */
            int flips = (int)mft_int(&r, 1, 8);
            size_t span = b == &s ? n : (n < 600 ? n : 600);
            for (int k = 0; k < flips; k++)
                p[mft_int(&r, 0, (int64_t)span - 1)] = (unsigned char)mft_next(&r);
        }
        unsigned char *q = malloc(n ? n : 1); /* exact-size copy: ASan sees overreads */
        memcpy(q, p, n);
        mf_model_file *f = NULL;
        mf_status st = mf_model_file_open_memory(q, n, &f);
        if (st == MF_OK) {
            ok++;
            for (int64_t i = 0; i < mf_model_file_count(f); i++) {
                mf_tensor t;
                mf_model_file_tensor(f, mf_model_file_name(f, i), 64, &t);
            }
            mf_moe_config c = small_cfg();
            mf_moe_weights w;
            mf_moe_weights_load(f, 3, &c, &w);
            mf_model_file_close(f);
        } else {
            cr_assert(st == MF_ERR_FILE_FORMAT || st == MF_ERR_OUT_OF_MEMORY,
                      "status %d", st);
            bad++;
        }
        free(q);
        free(p);
    }
    cr_expect_gt(bad, 100, "mutations were detected");
    cr_log_info("fuzz: %d parsed, %d rejected", ok, bad);
    free(g.p);
    free(s.p);
    layer_free(&L);
}
