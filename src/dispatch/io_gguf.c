/* GGUF (versions 2 and 3) reader: header, metadata (skipped but bounds
 * checked), tensor table, data section. Every read is checked against the
 * end of the file. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "io_internal.h"

typedef struct rd {
    const unsigned char *p, *end;
} rd;

static int need(rd *r, uint64_t n) { return (uint64_t)(r->end - r->p) >= n; }

static int u32(rd *r, uint32_t *v)
{
    if (!need(r, 4))
        return 0;
    *v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
         (uint32_t)r->p[3] << 24;
    r->p += 4;
    return 1;
}

static int u64(rd *r, uint64_t *v)
{
    uint32_t lo, hi;
    if (!u32(r, &lo) || !u32(r, &hi))
        return 0;
    *v = (uint64_t)hi << 32 | lo;
    return 1;
}

static int str(rd *r, const char **s, uint64_t *len)
{
    if (!u64(r, len) || !need(r, *len))
        return 0;
    *s = (const char *)r->p;
    r->p += *len;
    return 1;
}

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR,
       T_U64, T_I64, T_F64, T_COUNT };

static const uint8_t scalar_size[T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0,
                                             8, 8, 8};

/* Skips one value of type t; arrays may not nest deeper than one level. */
static int skip_value(rd *r, uint32_t t, int depth, uint32_t *u32_out)
{
    if (t >= T_COUNT)
        return 0;
    if (t == T_STR) {
        const char *s;
        uint64_t n;
        return str(r, &s, &n);
    }
    if (t == T_ARR) {
        uint32_t et;
        uint64_t n;
        if (depth > 0 || !u32(r, &et) || !u64(r, &n) || et >= T_COUNT)
            return 0;
        if (et != T_STR && et != T_ARR) {
            if (n > (uint64_t)(r->end - r->p) / scalar_size[et])
                return 0;
            r->p += n * scalar_size[et];
            return 1;
        }
        if (n > (uint64_t)(r->end - r->p) / 8) /* each item >= 8 bytes */
            return 0;
        for (uint64_t i = 0; i < n; i++)
            if (!skip_value(r, et, depth + 1, NULL))
                return 0;
        return 1;
    }
    if (!need(r, scalar_size[t]))
        return 0;
    if (u32_out && t == T_U32)
        u32(r, u32_out);
    else
        r->p += scalar_size[t];
    return 1;
}

/* ggml type ids read here. */
static int kind_of_ggml(uint32_t t)
{
    switch (t) {
    case 0: return MF_TYPE_F32;
    case 1: return MF_TYPE_F16;
    case 2: return MF_TYPE_Q4_0;
    case 8: return MF_TYPE_Q8_0;
    case 30: return MF_TYPE_BF16;
    default: return -1;
    }
}

#define MAX_TENSORS (1u << 20)

mf_status mf_gguf_parse(mf_model_file *f)
{
    rd r = {f->base, f->base + f->size};
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;
    if (!u32(&r, &magic) || magic != 0x46554747u || !u32(&r, &version) ||
        (version != 2 && version != 3) || !u64(&r, &n_tensors) ||
        !u64(&r, &n_kv) || n_tensors > MAX_TENSORS ||
        n_kv > (uint64_t)(r.end - r.p) / 12)
        return MF_ERR_FILE_FORMAT;
    uint32_t alignment = 32;
    for (uint64_t i = 0; i < n_kv; i++) {
        const char *key;
        uint64_t klen;
        uint32_t t, al = 0;
        if (!str(&r, &key, &klen) || !u32(&r, &t))
            return MF_ERR_FILE_FORMAT;
        int is_align = klen == 17 && memcmp(key, "general.alignment", 17) == 0;
        if (!skip_value(&r, t, 0, is_align ? &al : NULL))
            return MF_ERR_FILE_FORMAT;
        if (is_align) {
            if (t != T_U32 || al == 0 || al > 65536 || (al & (al - 1)))
                return MF_ERR_FILE_FORMAT;
            alignment = al;
        }
    }
    /* tensor infos: first pass records them relative to the data start */
    typedef struct info {
        const char *name;
        uint64_t len, off;
        int kind, nd;
        int64_t dims[4];
    } info;
    if (n_tensors > (uint64_t)(r.end - r.p) / 24)
        return MF_ERR_FILE_FORMAT;
    info *inf = n_tensors ? calloc((size_t)n_tensors, sizeof *inf) : NULL;
    if (n_tensors && !inf)
        return MF_ERR_OUT_OF_MEMORY;
    mf_status st = MF_ERR_FILE_FORMAT;
    for (uint64_t i = 0; i < n_tensors; i++) {
        uint32_t nd, type;
        if (!str(&r, &inf[i].name, &inf[i].len) || inf[i].len == 0 ||
            inf[i].len > 4096 || !u32(&r, &nd) || nd < 1 || nd > 4)
            goto out;
        inf[i].nd = (int)nd;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t v;
            if (!u64(&r, &v) || v < 1 || v > ((uint64_t)1 << 40))
                goto out;
            inf[i].dims[nd - 1 - d] = (int64_t)v; /* ne0 innermost */
        }
        if (!u32(&r, &type) || !u64(&r, &inf[i].off))
            goto out;
        inf[i].kind = kind_of_ggml(type);
        if (inf[i].off % alignment)
            goto out;
    }
    size_t hdr = (size_t)(r.p - f->base);
    size_t data0 = (hdr + alignment - 1) / alignment * alignment;
    if (data0 > f->size)
        goto out;
    size_t data_size = f->size - data0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (inf[i].kind < 0)
            continue; /* a type moefuse does not read: not listed */
        size_t nb = mf_file_tensor_bytes(inf[i].kind, inf[i].nd, inf[i].dims);
        if (!nb || inf[i].off > data_size || nb > data_size - inf[i].off)
            goto out;
        st = mf_file_add_tensor(f, inf[i].name, (size_t)inf[i].len,
                                inf[i].kind, inf[i].nd, inf[i].dims,
                                f->base + data0 + inf[i].off, nb);
        if (st != MF_OK)
            goto out;
        st = MF_ERR_FILE_FORMAT;
    }
    st = MF_OK;
out:
    free(inf);
    return st;
}
