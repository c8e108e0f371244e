/* A small JSON writer and a strict, bounded JSON parser (RFC 8259) for the
 * placement cache, the profiler's results and safetensors headers. Not
 * installed.
 *
 * The parser never reads outside [text, text + len), never recurses deeper
 * than MF_JSON_MAX_DEPTH, and rejects anything that is not exactly one JSON
 * value: bad grammar, invalid UTF-8, control characters in strings, escaped
 * NUL (\u0000), lone surrogates, numbers that do not fit a finite double,
 * duplicate keys. Numbers are read and written in the C locale whatever the
 * process locale is.
 *
 * Limits (input beyond them is rejected like bad grammar, return -1):
 *  - text: at most MF_JSON_MAX_TEXT bytes;
 *  - nesting: at most MF_JSON_MAX_DEPTH arrays/objects deep;
 *  - values: at most mf_json_max_nodes(len) in all (every value counts:
 *    containers, members, elements), that is MF_JSON_MIN_NODES or one per
 *    MF_JSON_BYTES_PER_NODE bytes of text, whichever is more. There is no
 *    other cap on the members of one object or the elements of one array.
 *    Real safetensors headers spend 12-20 bytes per value (a tensor entry
 *    is 7-9 values in ~100 bytes), the placement cache and the profiler's
 *    results stay under the floor; denser text ("[0,0,0,...": 2 bytes per
 *    value) is refused beyond the floor. The budget keeps member numbers
 *    below 2^23, so uint32_t indexes them.
 * Memory: a value takes sizeof(mf_json) (64 bytes on LP64), a string or
 * key its bytes rounded up to 16, an object member 20 bytes more (key
 * pointer, key offset, index entry): beyond the floor, at most ~13 bytes
 * per byte of text, plus as much again at worst in the growing lists of
 * the containers being read.
 * Time: linear in the text, plus O(m log m) key comparisons per object of
 * m members (duplicate keys are found by sorting); mf_json_get is
 * O(log m) on objects of more than MF_JSON_SMALL_OBJECT members. */
#ifndef MF_DISPATCH_JSON_H
#define MF_DISPATCH_JSON_H

#include <stddef.h>
#include <stdint.h>

#define MF_JSON_MAX_DEPTH 32
#define MF_JSON_MAX_TEXT ((size_t)64 << 20)
#define MF_JSON_MIN_NODES ((size_t)1 << 20)
#define MF_JSON_BYTES_PER_NODE 8
/* Objects up to this many members are searched and checked for duplicate
 * keys linearly, larger ones through a sorted index. */
#define MF_JSON_SMALL_OBJECT 16

/* Values a text of len bytes may hold (see the limits above). */
static inline size_t mf_json_max_nodes(size_t len)
{
    size_t n = len / MF_JSON_BYTES_PER_NODE;
    return n > MF_JSON_MIN_NODES ? n : MF_JSON_MIN_NODES;
}

typedef enum mf_json_type {
    MF_JSON_NULL = 0,
    MF_JSON_FALSE,
    MF_JSON_TRUE,
    MF_JSON_NUMBER,
    MF_JSON_STRING,
    MF_JSON_ARRAY,
    MF_JSON_OBJECT
} mf_json_type;

typedef struct mf_json mf_json;
struct mf_json {
    mf_json_type type;
    double num;           /* NUMBER */
    const char *str;      /* STRING: NUL-terminated, UTF-8, no NUL inside */
    size_t len;           /* STRING: bytes; ARRAY/OBJECT: element count */
    const mf_json *items; /* ARRAY/OBJECT: `len` values */
    const char *const *keys; /* OBJECT: `len` keys, NUL-terminated */
    const size_t *key_offsets; /* OBJECT: byte offset of each key's opening
                                  quote in the parsed text */
    const uint32_t *order; /* OBJECT of more than MF_JSON_SMALL_OBJECT
                              members: member numbers sorted by key; else
                              NULL. Members stay in text order. */
};

/* A parsed document; owns every node and string. */
typedef struct mf_json_doc mf_json_doc;

/* Parses text[0, len). On success returns 0 and *out owns the document; on
 * failure returns -1 (out of memory: -2), *out is NULL and, when err_off is
 * not NULL, *err_off is the byte offset where parsing stopped (for a
 * duplicate key: the opening quote of its second occurrence). */
int mf_json_parse(const char *text, size_t len, mf_json_doc **out,
                  size_t *err_off);
const mf_json *mf_json_root(const mf_json_doc *doc);
void mf_json_free(mf_json_doc *doc);

/* Member `key` of an object, or NULL (not an object, or no such key). */
const mf_json *mf_json_get(const mf_json *obj, const char *key);
/* Typed getters: 1 when v is present with the right type (and, for
 * mf_json_int, an integer in [lo, hi]), the value in *out; 0 otherwise with
 * *out untouched. */
int mf_json_num(const mf_json *v, double *out);
int mf_json_int(const mf_json *v, int64_t lo, int64_t hi, int64_t *out);
int mf_json_strv(const mf_json *v, const char **out);

/* The writer appends to a growing buffer. Any failure (allocation, nesting
 * deeper than MF_JSON_MAX_DEPTH, a key outside an object) sets `failed`,
 * after which every call is a no-op. Containers opened at depth >=
 * inline_depth are written on one line; shallower ones one member per line,
 * indented by two spaces. Non-finite numbers are written as null. */
typedef struct mf_jw {
    char *buf;
    size_t len, cap;
    int failed;
    int depth;
    int inline_depth;
    unsigned char first[MF_JSON_MAX_DEPTH + 1]; /* no member written yet */
    unsigned char is_obj[MF_JSON_MAX_DEPTH + 1];
    int after_key;
} mf_jw;

void mf_jw_init(mf_jw *w, int inline_depth);
void mf_jw_free(mf_jw *w);
void mf_jw_object(mf_jw *w);
void mf_jw_array(mf_jw *w);
void mf_jw_end(mf_jw *w); /* closes the innermost container */
void mf_jw_key(mf_jw *w, const char *key);
void mf_jw_str(mf_jw *w, const char *s);
void mf_jw_num(mf_jw *w, double v);
void mf_jw_int(mf_jw *w, int64_t v);
void mf_jw_bool(mf_jw *w, int v);
void mf_jw_null(mf_jw *w);
/* Appends raw bytes (no separator logic): for text after the root value. */
void mf_jw_raw(mf_jw *w, const char *s, size_t n);

/* Sorts order[0, n) to the numbers 0..n-1 ordered by strcmp of names[i],
 * equal names by number; tmp is scratch for n entries. A merge sort:
 * O(n log n) comparisons whatever the input. */
void mf_sort_names(const char *const *names, size_t n, uint32_t *order,
                   uint32_t *tmp);

/* 64-bit FNV-1a of n bytes, continuing from h (start with
 * MF_FNV64_INIT). */
#define MF_FNV64_INIT 0xcbf29ce484222325ull
uint64_t mf_fnv64(uint64_t h, const void *p, size_t n);

#endif
