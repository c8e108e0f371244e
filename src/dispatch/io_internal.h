/* Model files: the parsed tensor table shared by the GGUF and safetensors
 * readers. Not installed. */
#ifndef MF_DISPATCH_IO_INTERNAL_H
#define MF_DISPATCH_IO_INTERNAL_H

#include <moefuse/io.h>

/* Element kinds a file tensor can hold: an mf_type for float and ggml
 * block types, or raw uint32 words (MLX codes). */
#define MF_FT_U32 100

typedef struct mf_file_tensor {
    char *name;
    int kind;             /* mf_type or MF_FT_U32 */
    int n_dims;           /* 1..4 */
    int64_t dims[4];      /* outermost first; dims[n_dims-1] innermost */
    const unsigned char *data;
    size_t nbytes;
} mf_file_tensor;

struct mf_model_file {
    int is_gguf;
    void *map;            /* mmap'd region, or NULL for memory */
    size_t map_size;
    const unsigned char *base;
    size_t size;
    mf_file_tensor *t;
    int64_t n;
    uint32_t *order;      /* 0..n-1 sorted by name (equal names in table
                             order): lookups by name in O(log n) */
};

/* Parse f->base[0, f->size) into f->t / f->n. MF_ERR_FILE_FORMAT on any
 * inconsistency, MF_ERR_OUT_OF_MEMORY. On error the partial table is freed
 * by the caller (mf_model_file_close frees whatever is there). */
mf_status mf_gguf_parse(mf_model_file *f);
mf_status mf_safetensors_parse(mf_model_file *f);

/* Appends a tensor (name copied, n bytes). */
mf_status mf_file_add_tensor(mf_model_file *f, const char *name, size_t len,
                             int kind, int n_dims, const int64_t *dims,
                             const unsigned char *data, size_t nbytes);

/* Bytes of a tensor of `kind` with these dims (innermost last); 0 when the
 * shape is impossible (block multiple, overflow, dim < 1). */
size_t mf_file_tensor_bytes(int kind, int n_dims, const int64_t *dims);

#endif
