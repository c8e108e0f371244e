/* safetensors reader: an 8-byte little-endian header length, a JSON header
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
 * {...}}, then the data. Offsets are relative to the end of the header and
 * must lie inside the file and match dtype x shape exactly. Tensors of
 * dtypes moefuse does not read are left out of the table. */
#include <string.h>

#include "internal.h"
#include "io_internal.h"
#include "json.h"

static int kind_of_dtype(const char *s)
{
    if (strcmp(s, "F32") == 0)
        return MF_TYPE_F32;
    if (strcmp(s, "F16") == 0)
        return MF_TYPE_F16;
    if (strcmp(s, "BF16") == 0)
        return MF_TYPE_BF16;
    if (strcmp(s, "U32") == 0)
        return MF_FT_U32;
    return -1;
}

static mf_status add_entry(mf_model_file *f, const char *name,
                           const mf_json *v, const unsigned char *data,
                           size_t data_size)
{
    const char *dtype;
    const mf_json *shape = mf_json_get(v, "shape");
    const mf_json *offs = mf_json_get(v, "data_offsets");
    if (v->type != MF_JSON_OBJECT || !mf_json_strv(mf_json_get(v, "dtype"), &dtype) ||
        !shape || shape->type != MF_JSON_ARRAY || !offs ||
        offs->type != MF_JSON_ARRAY || offs->len != 2 || shape->len > 4)
        return MF_ERR_FILE_FORMAT;
    int64_t b, e, dims[4] = {1, 1, 1, 1};
    if (!mf_json_int(&offs->items[0], 0, INT64_MAX, &b) ||
        !mf_json_int(&offs->items[1], 0, INT64_MAX, &e) || e < b ||
        (uint64_t)e > data_size)
        return MF_ERR_FILE_FORMAT;
    int nd = (int)shape->len;
    for (int d = 0; d < nd; d++)
        if (!mf_json_int(&shape->items[d], 1, (int64_t)1 << 40, &dims[d]))
            return MF_ERR_FILE_FORMAT;
    int kind = kind_of_dtype(dtype);
    if (kind < 0)
        return MF_OK; /* not a type moefuse reads */
    if (nd == 0) { /* a scalar: one element */
        nd = 1;
        dims[0] = 1;
    }
    size_t nb = mf_file_tensor_bytes(kind, nd, dims);
    if (!nb || nb != (size_t)(e - b))
        return MF_ERR_FILE_FORMAT;
    return mf_file_add_tensor(f, name, strlen(name), kind, nd, dims,
                              data + b, nb);
}

mf_status mf_safetensors_parse(mf_model_file *f)
{
    if (f->size < 10)
        return MF_ERR_FILE_FORMAT;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | f->base[i];
    if (n < 2 || n > f->size - 8 || n > MF_JSON_MAX_TEXT)
        return MF_ERR_FILE_FORMAT;
    mf_json_doc *doc = NULL;
    int rc = mf_json_parse((const char *)f->base + 8, (size_t)n, &doc, NULL);
    if (rc == -2)
        return MF_ERR_OUT_OF_MEMORY;
    if (rc != 0)
        return MF_ERR_FILE_FORMAT;
    const mf_json *root = mf_json_root(doc);
    mf_status st = MF_OK;
    if (root->type != MF_JSON_OBJECT)
        st = MF_ERR_FILE_FORMAT;
    const unsigned char *data = f->base + 8 + n;
    size_t data_size = f->size - 8 - (size_t)n;
    for (size_t i = 0; st == MF_OK && i < root->len; i++) {
        if (strcmp(root->keys[i], "__metadata__") == 0)
            continue;
        st = add_entry(f, root->keys[i], &root->items[i], data, data_size);
    }
    mf_json_free(doc);
    return st;
}
