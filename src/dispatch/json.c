/* Strict bounded JSON parser and a small writer (see json.h). */
#include "json.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- C locale -- */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* Switches this thread to the C numeric locale; returns what to restore
 * (0 when the switch was not possible and the process locale stays). */
static locale_t enter_c_locale(void)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale ? uselocale(c_locale) : (locale_t)0;
}

static void leave_c_locale(locale_t old)
{
    if (old)
        uselocale(old);
}

uint64_t mf_fnv64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---------------------------------------------------------------- arena -- */

typedef struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_blk;

struct mf_json_doc {
    arena_blk *blocks;
    mf_json root;
};

static void *arena_alloc(mf_json_doc *d, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    arena_blk *b = d->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = d->blocks;
        d->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void mf_json_free(mf_json_doc *doc)
{
    if (!doc)
        return;
    arena_blk *b = doc->blocks;
    while (b) {
        arena_blk *n = b->next;
        free(b);
        b = n;
    }
    free(doc);
}

const mf_json *mf_json_root(const mf_json_doc *doc)
{
    return doc ? &doc->root : NULL;
}

/* --------------------------------------------------------------- parser -- */

typedef struct parser {
    const char *s;
    size_t n, pos;
    size_t nodes, max_nodes;
    int oom;
    mf_json_doc *doc;
} parser;

static void skip_ws(parser *p)
{
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static int peek(const parser *p) /* -1 at the end */
{
    return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1;
}

static int hex4(parser *p, unsigned *out)
{
    if (p->n - p->pos < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos + i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -1;
        v = v * 16 + d;
    }
    p->pos += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the valid UTF-8 sequence at s[0, avail) (RFC 3629), 0 if
 * invalid. s[0] >= 0x80. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (avail < n)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

/* At the opening quote. Decodes into the arena. */
static int parse_string(parser *p, const char **out, size_t *out_len)
{
    p->pos++; /* the quote */
    size_t start = p->pos, end = start;
    /* Find the closing quote (an escaped character is skipped). */
    for (;;) {
        if (end >= p->n)
            return -1;
        char c = p->s[end];
        if (c == '"')
            break;
        end += (c == '\\') ? 2 : 1;
    }
    char *o = arena_alloc(p->doc, end - start + 1);
    if (!o) {
        p->oom = 1;
        return -1;
    }
    size_t k = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20)
            return -1;
        if (c >= 0x80) {
            size_t m = utf8_len((const unsigned char *)p->s + p->pos,
                                end - p->pos);
            if (!m)
                return -1;
            memcpy(o + k, p->s + p->pos, m);
            k += m;
            p->pos += m;
            continue;
        }
        if (c != '\\') {
            o[k++] = (char)c;
            p->pos++;
            continue;
        }
        p->pos++;
        if (p->pos >= end)
            return -1;
        char e = p->s[p->pos++];
        switch (e) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (end - p->pos < 4 || hex4(p, &cp))
                return -1;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return -1;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (end - p->pos < 6 || p->s[p->pos] != '\\' ||
                    p->s[p->pos + 1] != 'u')
                    return -1;
                p->pos += 2;
                if (hex4(p, &lo) || lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp == 0)
                return -1;
            /* An escape is at least 6 bytes of input and yields at most 4
             * (a pair: 12 bytes, 4 out), so o never outgrows its size. */
            k += put_utf8(o + k, cp);
            break;
        }
        default:
            return -1;
        }
    }
    p->pos = end + 1;
    o[k] = 0;
    *out = o;
    *out_len = k;
    return 0;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *p, double *out)
{
    size_t start = p->pos;
    if (peek(p) == '-')
        p->pos++;
    if (peek(p) == '0') {
        p->pos++;
    } else if (is_digit(peek(p))) {
        while (is_digit(peek(p)))
            p->pos++;
    } else {
        return -1;
    }
    if (peek(p) == '.') {
        p->pos++;
        if (!is_digit(peek(p)))
            return -1;
        while (is_digit(peek(p)))
            p->pos++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-')
            p->pos++;
        if (!is_digit(peek(p)))
            return -1;
        while (is_digit(peek(p)))
            p->pos++;
    }
    char buf[64];
    size_t len = p->pos - start;
    if (len >= sizeof buf)
        return -1;
    memcpy(buf, p->s + start, len);
    buf[len] = 0;
    char *endp = NULL;
    double v = strtod(buf, &endp);
    if (endp != buf + len || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int parse_lit(parser *p, const char *lit)
{
    size_t n = strlen(lit);
    if (p->n - p->pos < n || memcmp(p->s + p->pos, lit, n) != 0)
        return -1;
    p->pos += n;
    return 0;
}

static int parse_value(parser *p, mf_json *v, int depth);

/* A growing list of values (and keys) for one container being parsed. */
typedef struct vec {
    mf_json *v;
    const char **k;
    size_t *ko;
    size_t n, cap;
} vec;

static int vec_push(parser *p, vec *a, int with_keys)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        mf_json *nv = realloc(a->v, cap * sizeof *nv);
        if (nv)
            a->v = nv;
        if (with_keys) {
            const char **nk = realloc(a->k, cap * sizeof *nk);
            if (nk)
                a->k = nk;
            size_t *no = realloc(a->ko, cap * sizeof *no);
            if (no)
                a->ko = no;
            if (!nk || !no) {
                p->oom = 1;
                return -1;
            }
        }
        if (!nv) {
            p->oom = 1;
            return -1;
        }
        a->cap = cap;
    }
    memset(&a->v[a->n], 0, sizeof a->v[a->n]);
    a->n++;
    return 0;
}

static void vec_free(vec *a)
{
    free(a->v);
    free(a->k);
    free(a->ko);
}

void mf_sort_names(const char *const *names, size_t n, uint32_t *order,
                   uint32_t *tmp)
{
    for (size_t i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    /* Bottom-up: runs of w merged into runs of 2w, from src into dst; a
     * tie takes the left run's entry, which keeps equal names in number
     * order. */
    uint32_t *src = order, *dst = tmp;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = n - lo > w ? lo + w : n;
            size_t hi = n - mid > w ? mid + w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = strcmp(names[src[j]], names[src[i]]) < 0 ? src[j++]
                                                                    : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != order)
        memcpy(order, src, n * sizeof *order);
}

/* The sorted index of a large object's keys; a repeated key fails with
 * p->pos at its second occurrence. */
static int index_keys(parser *p, const vec *a, uint32_t **out)
{
    uint32_t *order = arena_alloc(p->doc, a->n * sizeof *order);
    uint32_t *tmp = malloc(a->n * sizeof *tmp);
    if (!order || !tmp) {
        free(tmp);
        p->oom = 1;
        return -1;
    }
    mf_sort_names(a->k, a->n, order, tmp);
    free(tmp);
    for (size_t i = 1; i < a->n; i++) {
        if (strcmp(a->k[order[i - 1]], a->k[order[i]]) == 0) {
            p->pos = a->ko[order[i]]; /* the later one: equal keys keep
                                         their text order */
            return -1;
        }
    }
    *out = order;
    return 0;
}

/* Copies the collected members into the arena. */
static int vec_finish(parser *p, vec *a, mf_json *v, int with_keys)
{
    v->len = a->n;
    if (!a->n)
        return 0;
    uint32_t *order = NULL;
    if (with_keys && a->n > MF_JSON_SMALL_OBJECT && index_keys(p, a, &order))
        return -1;
    mf_json *items = arena_alloc(p->doc, a->n * sizeof *items);
    if (!items) {
        p->oom = 1;
        return -1;
    }
    memcpy(items, a->v, a->n * sizeof *items);
    v->items = items;
    if (with_keys) {
        const char **keys = arena_alloc(p->doc, a->n * sizeof *keys);
        size_t *offs = arena_alloc(p->doc, a->n * sizeof *offs);
        if (!keys || !offs) {
            p->oom = 1;
            return -1;
        }
        memcpy(keys, a->k, a->n * sizeof *keys);
        memcpy(offs, a->ko, a->n * sizeof *offs);
        v->keys = keys;
        v->key_offsets = offs;
        v->order = order;
    }
    return 0;
}

static int parse_container(parser *p, mf_json *v, int depth, int obj)
{
    if (depth >= MF_JSON_MAX_DEPTH)
        return -1;
    char close = obj ? '}' : ']';
    v->type = obj ? MF_JSON_OBJECT : MF_JSON_ARRAY;
    p->pos++;
    vec a = {0};
    int rc = -1;
    skip_ws(p);
    if (peek(p) == close) {
        p->pos++;
        rc = 0;
        goto done;
    }
    for (;;) {
        skip_ws(p);
        if (vec_push(p, &a, obj))
            goto done;
        if (obj) {
            if (peek(p) != '"')
                goto done;
            size_t koff = p->pos, klen;
            const char *key;
            if (parse_string(p, &key, &klen))
                goto done;
            /* Larger objects are checked once read (vec_finish). */
            for (size_t i = 0; a.n <= MF_JSON_SMALL_OBJECT && i + 1 < a.n; i++)
                if (strcmp(a.k[i], key) == 0) {
                    p->pos = koff;
                    goto done;
                }
            a.k[a.n - 1] = key;
            a.ko[a.n - 1] = koff;
            skip_ws(p);
            if (peek(p) != ':')
                goto done;
            p->pos++;
            skip_ws(p);
        }
        if (parse_value(p, &a.v[a.n - 1], depth + 1))
            goto done;
        skip_ws(p);
        int c = peek(p);
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == close) {
            p->pos++;
            rc = vec_finish(p, &a, v, obj);
            goto done;
        }
        goto done;
    }
done:
    vec_free(&a);
    return rc;
}

static int parse_value(parser *p, mf_json *v, int depth)
{
    if (++p->nodes > p->max_nodes)
        return -1;
    int c = peek(p);
    switch (c) {
    case '{': return parse_container(p, v, depth, 1);
    case '[': return parse_container(p, v, depth, 0);
    case '"':
        v->type = MF_JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    case 't': v->type = MF_JSON_TRUE; return parse_lit(p, "true");
    case 'f': v->type = MF_JSON_FALSE; return parse_lit(p, "false");
    case 'n': v->type = MF_JSON_NULL; return parse_lit(p, "null");
    default:
        v->type = MF_JSON_NUMBER;
        return parse_number(p, &v->num);
    }
}

int mf_json_parse(const char *text, size_t len, mf_json_doc **out,
                  size_t *err_off)
{
    if (out)
        *out = NULL;
    if (!text || !out || len > MF_JSON_MAX_TEXT) {
        if (err_off)
            *err_off = 0;
        return -1;
    }
    mf_json_doc *doc = calloc(1, sizeof *doc);
    if (!doc)
        return -2;
    parser p = {.s = text, .n = len, .max_nodes = mf_json_max_nodes(len),
                .doc = doc};
    locale_t old = enter_c_locale();
    skip_ws(&p);
    int rc = parse_value(&p, &doc->root, 0);
    leave_c_locale(old);
    if (rc == 0) {
        skip_ws(&p);
        if (p.pos != p.n)
            rc = -1;
    }
    if (rc != 0) {
        if (err_off)
            *err_off = p.pos;
        mf_json_free(doc);
        return p.oom ? -2 : -1;
    }
    *out = doc;
    return 0;
}

const mf_json *mf_json_get(const mf_json *obj, const char *key)
{
    if (!obj || !key || obj->type != MF_JSON_OBJECT)
        return NULL;
    if (obj->order) {
        /* The first entry whose key is not below `key`. */
        size_t lo = 0, hi = obj->len;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(obj->keys[obj->order[mid]], key) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < obj->len && strcmp(obj->keys[obj->order[lo]], key) == 0)
            return &obj->items[obj->order[lo]];
        return NULL;
    }
    for (size_t i = 0; i < obj->len; i++)
        if (strcmp(obj->keys[i], key) == 0)
            return &obj->items[i];
    return NULL;
}

int mf_json_num(const mf_json *v, double *out)
{
    if (!v || v->type != MF_JSON_NUMBER)
        return 0;
    *out = v->num;
    return 1;
}

int mf_json_int(const mf_json *v, int64_t lo, int64_t hi, int64_t *out)
{
    /* 2^53: every integer up to it is exact in a double. */
    if (!v || v->type != MF_JSON_NUMBER || !(v->num >= -9007199254740992.0) ||
        !(v->num <= 9007199254740992.0))
        return 0;
    double t = trunc(v->num);
    if (t != v->num)
        return 0;
    int64_t i = (int64_t)t;
    if (i < lo || i > hi)
        return 0;
    *out = i;
    return 1;
}

int mf_json_strv(const mf_json *v, const char **out)
{
    if (!v || v->type != MF_JSON_STRING)
        return 0;
    *out = v->str;
    return 1;
}

/* --------------------------------------------------------------- writer -- */

void mf_jw_init(mf_jw *w, int inline_depth)
{
    memset(w, 0, sizeof *w);
    w->inline_depth = inline_depth;
}

void mf_jw_free(mf_jw *w)
{
    free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
}

void mf_jw_raw(mf_jw *w, const char *s, size_t n)
{
    if (w->failed)
        return;
    if (w->cap - w->len < n + 1) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap - w->len < n + 1) {
            if (cap > ((size_t)-1) / 2) {
                w->failed = 1;
                return;
            }
            cap *= 2;
        }
        char *b = realloc(w->buf, cap);
        if (!b) {
            w->failed = 1;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = 0;
}

static void put(mf_jw *w, const char *s) { mf_jw_raw(w, s, strlen(s)); }

static int block(const mf_jw *w) { return w->depth <= w->inline_depth; }

static void newline(mf_jw *w, int level)
{
    put(w, "\n");
    for (int i = 0; i < level; i++)
        put(w, "  ");
}

/* Separator and layout before a member (key or array element). */
static void member_prefix(mf_jw *w)
{
    if (!w->first[w->depth])
        put(w, block(w) ? "," : ", ");
    if (block(w))
        newline(w, w->depth);
    w->first[w->depth] = 0;
}

/* Called before every value; 0 when the value may be written. */
static int value_prefix(mf_jw *w)
{
    if (w->failed)
        return -1;
    if (w->depth == 0)
        return 0;
    if (w->is_obj[w->depth]) {
        if (!w->after_key) {
            w->failed = 1;
            return -1;
        }
        w->after_key = 0;
        return 0;
    }
    member_prefix(w);
    return 0;
}

static void open_container(mf_jw *w, int obj)
{
    if (value_prefix(w))
        return;
    if (w->depth >= MF_JSON_MAX_DEPTH) {
        w->failed = 1;
        return;
    }
    put(w, obj ? "{" : "[");
    w->depth++;
    w->first[w->depth] = 1;
    w->is_obj[w->depth] = (unsigned char)obj;
}

void mf_jw_object(mf_jw *w) { open_container(w, 1); }
void mf_jw_array(mf_jw *w) { open_container(w, 0); }

void mf_jw_end(mf_jw *w)
{
    if (w->failed)
        return;
    if (w->depth == 0 || w->after_key) {
        w->failed = 1;
        return;
    }
    int was_block = block(w), empty = w->first[w->depth];
    int obj = w->is_obj[w->depth];
    w->depth--;
    if (was_block && !empty)
        newline(w, w->depth);
    put(w, obj ? "}" : "]");
}

static void put_escaped(mf_jw *w, const char *s)
{
    put(w, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        switch (*c) {
        case '"': put(w, "\\\""); break;
        case '\\': put(w, "\\\\"); break;
        case '\n': put(w, "\\n"); break;
        case '\t': put(w, "\\t"); break;
        case '\r': put(w, "\\r"); break;
        default:
            if (*c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *c);
                put(w, esc);
            } else {
                mf_jw_raw(w, (const char *)c, 1);
            }
        }
    }
    put(w, "\"");
}

void mf_jw_key(mf_jw *w, const char *key)
{
    if (w->failed)
        return;
    if (w->depth == 0 || !w->is_obj[w->depth] || w->after_key) {
        w->failed = 1;
        return;
    }
    member_prefix(w);
    put_escaped(w, key);
    put(w, ": ");
    w->after_key = 1;
}

void mf_jw_str(mf_jw *w, const char *s)
{
    if (value_prefix(w))
        return;
    put_escaped(w, s ? s : "");
}

void mf_jw_num(mf_jw *w, double v)
{
    if (value_prefix(w))
        return;
    if (!isfinite(v)) {
        put(w, "null");
        return;
    }
    char b[40];
    locale_t old = enter_c_locale();
    snprintf(b, sizeof b, "%.17g", v);
    leave_c_locale(old);
    /* Shortest form that reads back to the same double. */
    for (int prec = 6; prec < 17; prec++) {
        char t[40];
        old = enter_c_locale();
        snprintf(t, sizeof t, "%.*g", prec, v);
        double back = strtod(t, NULL);
        leave_c_locale(old);
        if (back == v) {
            memcpy(b, t, sizeof b);
            break;
        }
    }
    put(w, b);
}

void mf_jw_int(mf_jw *w, int64_t v)
{
    if (value_prefix(w))
        return;
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)v);
    put(w, b);
}

void mf_jw_bool(mf_jw *w, int v)
{
    if (value_prefix(w))
        return;
    put(w, v ? "true" : "false");
}

void mf_jw_null(mf_jw *w)
{
    if (value_prefix(w))
        return;
    put(w, "null");
}
