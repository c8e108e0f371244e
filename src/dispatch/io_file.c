/* Model files: open/map, the tensor table, lookups, one layer's weights. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "io_internal.h"
#include "json.h"

size_t mf_file_tensor_bytes(int kind, int n_dims, const int64_t *dims)
{
    if (n_dims < 1 || n_dims > 4)
        return 0;
    int64_t inner = dims[n_dims - 1];
    size_t row;
    if (kind == MF_FT_U32) {
        if (inner < 1 || inner > MF_MAX_DIM)
            return 0;
        row = (size_t)inner * 4;
    } else {
        row = mf_tensor_row_bytes((mf_type)kind, inner);
    }
    if (!row)
        return 0;
    size_t total = row;
    for (int d = 0; d < n_dims - 1; d++)
        if (dims[d] < 1 || !mf_mul_size(total, (size_t)dims[d], &total))
            return 0;
    return total;
}

mf_status mf_file_add_tensor(mf_model_file *f, const char *name, size_t len,
                             int kind, int n_dims, const int64_t *dims,
                             const unsigned char *data, size_t nbytes)
{
    if ((f->n & (f->n - 1)) == 0) { /* grow at powers of two */
        size_t cap = f->n ? (size_t)f->n * 2 : 16;
        mf_file_tensor *t = realloc(f->t, cap * sizeof *t);
        if (!t)
            return MF_ERR_OUT_OF_MEMORY;
        f->t = t;
    }
    char *nm = malloc(len + 1);
    if (!nm)
        return MF_ERR_OUT_OF_MEMORY;
    memcpy(nm, name, len);
    nm[len] = 0;
    if (strlen(nm) != len) { /* NUL inside a name */
        free(nm);
        return MF_ERR_FILE_FORMAT;
    }
    mf_file_tensor *t = &f->t[f->n++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->kind = kind;
    t->n_dims = n_dims;
    memcpy(t->dims, dims, (size_t)n_dims * sizeof *dims);
    t->data = data;
    t->nbytes = nbytes;
    return MF_OK;
}

/* The name index behind find(). Both readers keep the table far below
 * 2^32 entries (GGUF: MAX_TENSORS; safetensors: the JSON value budget). */
static mf_status build_index(mf_model_file *f)
{
    size_t n = (size_t)f->n;
    if (!n)
        return MF_OK;
    if (f->n > (int64_t)UINT32_MAX)
        return MF_ERR_FILE_FORMAT;
    const char **names = malloc(n * sizeof *names);
    uint32_t *tmp = malloc(n * sizeof *tmp);
    f->order = malloc(n * sizeof *f->order);
    mf_status st = MF_ERR_OUT_OF_MEMORY;
    if (names && tmp && f->order) {
        for (size_t i = 0; i < n; i++)
            names[i] = f->t[i].name;
        mf_sort_names(names, n, f->order, tmp);
        st = MF_OK;
    }
    free(names);
    free(tmp);
    return st;
}

static mf_status parse(mf_model_file *f)
{
    mf_status st;
    if (f->size >= 4 && memcmp(f->base, "GGUF", 4) == 0) {
        f->is_gguf = 1;
        st = mf_gguf_parse(f);
    } else {
        st = mf_safetensors_parse(f);
    }
    return st == MF_OK ? build_index(f) : st;
}

mf_status mf_model_file_open_memory(const void *data, size_t size,
                                    mf_model_file **out)
{
    if (!data || !out)
        return MF_ERR_INVALID_ARG;
    mf_model_file *f = calloc(1, sizeof *f);
    if (!f)
        return MF_ERR_OUT_OF_MEMORY;
    f->base = data;
    f->size = size;
    mf_status st = parse(f);
    if (st != MF_OK) {
        mf_model_file_close(f);
        return st;
    }
    *out = f;
    return MF_OK;
}

mf_status mf_model_file_open(const char *path, mf_model_file **out)
{
    if (!path || !out)
        return MF_ERR_INVALID_ARG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return MF_ERR_IO;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return MF_ERR_IO;
    }
    if (sb.st_size == 0) {
        close(fd);
        return MF_ERR_FILE_FORMAT;
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return MF_ERR_IO;
    mf_model_file *f = NULL;
    mf_status st = mf_model_file_open_memory(map, (size_t)sb.st_size, &f);
    if (st != MF_OK) {
        munmap(map, (size_t)sb.st_size);
        return st;
    }
    f->map = map;
    f->map_size = (size_t)sb.st_size;
    *out = f;
    return MF_OK;
}

void mf_model_file_close(mf_model_file *f)
{
    if (!f)
        return;
    for (int64_t i = 0; i < f->n; i++)
        free(f->t[i].name);
    free(f->t);
    free(f->order);
    if (f->map)
        munmap(f->map, f->map_size);
    free(f);
}

const char *mf_model_file_format(const mf_model_file *f)
{
    return !f ? "?" : f->is_gguf ? "gguf" : "safetensors";
}

int64_t mf_model_file_count(const mf_model_file *f) { return f ? f->n : 0; }

const char *mf_model_file_name(const mf_model_file *f, int64_t i)
{
    return f && i >= 0 && i < f->n ? f->t[i].name : NULL;
}

/* The first tensor of that name in table order, or NULL. */
static const mf_file_tensor *find(const mf_model_file *f, const char *name)
{
    size_t lo = 0, hi = (size_t)f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(f->t[f->order[mid]].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < (size_t)f->n && strcmp(f->t[f->order[lo]].name, name) == 0)
        return &f->t[f->order[lo]];
    return NULL;
}

static void to_ensk(const mf_file_tensor *t, int64_t *e, int64_t *n, int64_t *k)
{
    *k = t->dims[t->n_dims - 1];
    *n = t->n_dims >= 2 ? t->dims[t->n_dims - 2] : 1;
    *e = 1;
    for (int d = 0; d < t->n_dims - 2; d++)
        *e *= t->dims[d];
}

/* MLX stack: codes (u32) + scales + biases (same float type). */
static mf_status mlx_tensor(const mf_model_file *f, const char *base,
                            const mf_file_tensor *codes, int64_t k_hint,
                            mf_tensor *out)
{
    char nm[512];
    snprintf(nm, sizeof nm, "%.490s.scales", base);
    const mf_file_tensor *sc = find(f, nm);
    snprintf(nm, sizeof nm, "%.490s.biases", base);
    const mf_file_tensor *bi = find(f, nm);
    if (!sc || !bi || k_hint < 1)
        return MF_ERR_INVALID_ARG;
    int64_t e, n, words, se, sn, groups, be, bn, bg;
    to_ensk(codes, &e, &n, &words);
    to_ensk(sc, &se, &sn, &groups);
    to_ensk(bi, &be, &bn, &bg);
    if (se != e || sn != n || be != e || bn != n || bg != groups ||
        sc->kind != bi->kind || sc->kind > MF_TYPE_BF16 ||
        k_hint % groups || (words * 32) % k_hint)
        return MF_ERR_FILE_FORMAT;
    int64_t bits = words * 32 / k_hint, group = k_hint / groups;
    if (bits != 4 && bits != 8)
        return MF_ERR_UNSUPPORTED;
    if (sc->kind == MF_TYPE_F32 &&
        (((uintptr_t)sc->data | (uintptr_t)bi->data) & 3))
        return MF_ERR_FILE_FORMAT;
    if (((uintptr_t)sc->data | (uintptr_t)bi->data) & 1)
        return MF_ERR_FILE_FORMAT;
    mf_tensor t = mf_tensor_mlx(bits == 4 ? MF_TYPE_MLX_Q4 : MF_TYPE_MLX_Q8, e,
                                n, k_hint, (int32_t)group, (mf_type)sc->kind,
                                codes->data, sc->data, bi->data);
    mf_status st = mf_tensor_check(&t);
    if (st != MF_OK)
        return st == MF_ERR_INVALID_ARG ? MF_ERR_FILE_FORMAT : st;
    *out = t;
    return MF_OK;
}

mf_status mf_model_file_tensor(const mf_model_file *f, const char *name,
                               int64_t k_hint, mf_tensor *out)
{
    if (!f || !name || !out || strlen(name) > 400)
        return MF_ERR_INVALID_ARG;
    const mf_file_tensor *t = find(f, name);
    if (!t) {
        char nm[512];
        snprintf(nm, sizeof nm, "%.490s.weight", name);
        t = find(f, nm);
        if (!t)
            return MF_ERR_INVALID_ARG;
    }
    if (t->kind == MF_FT_U32) {
        char base[512];
        size_t len = strlen(name);
        if (len > 7 && strcmp(name + len - 7, ".weight") == 0)
            len -= 7;
        snprintf(base, sizeof base, "%.*s", (int)len, name);
        return mlx_tensor(f, base, t, k_hint, out);
    }
    int64_t e, n, k;
    to_ensk(t, &e, &n, &k);
    if (t->kind == MF_TYPE_F32 && ((uintptr_t)t->data & 3))
        return MF_ERR_FILE_FORMAT;
    if ((t->kind == MF_TYPE_F16 || t->kind == MF_TYPE_BF16) &&
        ((uintptr_t)t->data & 1))
        return MF_ERR_FILE_FORMAT;
    mf_tensor d = mf_tensor_dense((mf_type)t->kind, e, n, k, t->data);
    mf_status st = mf_tensor_check(&d);
    if (st != MF_OK)
        return st == MF_ERR_INVALID_ARG ? MF_ERR_FILE_FORMAT : st;
    *out = d;
    return MF_OK;
}

/* An f32 vector/matrix of exactly `count` elements, 4-byte aligned. */
static mf_status f32_tensor(const mf_model_file *f, const char *name,
                            int64_t count, const float **out)
{
    const mf_file_tensor *t = find(f, name);
    if (!t)
        return MF_ERR_INVALID_ARG;
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++)
        n *= t->dims[d];
    if (t->kind != MF_TYPE_F32 || n != count || ((uintptr_t)t->data & 3))
        return MF_ERR_FILE_FORMAT;
    *out = (const float *)(const void *)t->data;
    return MF_OK;
}

typedef struct names {
    const char *router, *router_bias, *corr, *stack[3], *stack_bias[3],
        *shared[3];
} names;

static const names gguf_names = {
    "blk.%d.ffn_gate_inp.weight", "blk.%d.ffn_gate_inp.bias",
    "blk.%d.exp_probs_b.bias",
    {"blk.%d.ffn_gate_exps.weight", "blk.%d.ffn_up_exps.weight",
     "blk.%d.ffn_down_exps.weight"},
    {"blk.%d.ffn_gate_exps.bias", "blk.%d.ffn_up_exps.bias",
     "blk.%d.ffn_down_exps.bias"},
    {"blk.%d.ffn_gate_shexp.weight", "blk.%d.ffn_up_shexp.weight",
     "blk.%d.ffn_down_shexp.weight"}};

static const names mlx_names = {
    "model.layers.%d.mlp.gate", "model.layers.%d.mlp.gate.bias",
    "model.layers.%d.mlp.gate.e_score_correction_bias",
    {"model.layers.%d.mlp.switch_mlp.gate_proj",
     "model.layers.%d.mlp.switch_mlp.up_proj",
     "model.layers.%d.mlp.switch_mlp.down_proj"},
    {"model.layers.%d.mlp.switch_mlp.gate_proj.bias",
     "model.layers.%d.mlp.switch_mlp.up_proj.bias",
     "model.layers.%d.mlp.switch_mlp.down_proj.bias"},
    {"model.layers.%d.mlp.shared_experts.gate_proj",
     "model.layers.%d.mlp.shared_experts.up_proj",
     "model.layers.%d.mlp.shared_experts.down_proj"}};

static mf_status load_tensor(const mf_model_file *f, const char *fmt,
                             int layer, int64_t e, int64_t n, int64_t k,
                             mf_tensor *out)
{
    char nm[512];
    snprintf(nm, sizeof nm, fmt, layer);
    mf_tensor t;
    mf_status st = mf_model_file_tensor(f, nm, k, &t);
    if (st != MF_OK)
        return st;
    if (t.e != e || t.n != n || t.k != k)
        return MF_ERR_INVALID_ARG;
    *out = t;
    return MF_OK;
}

static mf_status load_f32(const mf_model_file *f, const char *fmt, int layer,
                          int64_t count, const float **out)
{
    char nm[512];
    snprintf(nm, sizeof nm, fmt, layer);
    return f32_tensor(f, nm, count, out);
}

mf_status mf_moe_weights_load(const mf_model_file *f, int layer,
                              const mf_moe_config *cfg, mf_moe_weights *out)
{
    if (!f || !cfg || !out || layer < 0 || layer > 100000 ||
        cfg->gate_up_layout != MF_GLU_SEPARATE || cfg->hidden < 1 ||
        cfg->expert_ffn < 1 || cfg->n_experts < 1 ||
        (cfg->n_shared && cfg->shared_ffn < 1))
        return MF_ERR_INVALID_ARG;
    const names *nm = f->is_gguf ? &gguf_names : &mlx_names;
    int64_t H = cfg->hidden, F = cfg->expert_ffn, E = cfg->n_experts;
    mf_moe_weights w;
    memset(&w, 0, sizeof w);
    mf_status st = load_tensor(f, nm->router, layer, 1, E, H, &w.router);
    if (st == MF_OK && cfg->router_bias)
        st = load_f32(f, nm->router_bias, layer, E, &w.router_bias);
    if (st == MF_OK && cfg->correction_bias)
        st = load_f32(f, nm->corr, layer, E, &w.correction_bias);
    if (st == MF_OK)
        st = load_tensor(f, nm->stack[0], layer, E, F, H, &w.gate);
    if (st == MF_OK)
        st = load_tensor(f, nm->stack[1], layer, E, F, H, &w.up);
    if (st == MF_OK)
        st = load_tensor(f, nm->stack[2], layer, E, H, F, &w.down);
    if (st == MF_OK && cfg->expert_bias) {
        st = load_f32(f, nm->stack_bias[0], layer, E * F, &w.gate_bias);
        if (st == MF_OK)
            st = load_f32(f, nm->stack_bias[1], layer, E * F, &w.up_bias);
        if (st == MF_OK)
            st = load_f32(f, nm->stack_bias[2], layer, E * H, &w.down_bias);
    }
    if (st == MF_OK && cfg->n_shared) {
        int64_t Fs = cfg->shared_ffn;
        st = load_tensor(f, nm->shared[0], layer, 1, Fs, H, &w.shared_gate);
        if (st == MF_OK)
            st = load_tensor(f, nm->shared[1], layer, 1, Fs, H, &w.shared_up);
        if (st == MF_OK)
            st = load_tensor(f, nm->shared[2], layer, 1, H, Fs, &w.shared_down);
    }
    if (st == MF_OK)
        *out = w;
    return st;
}
