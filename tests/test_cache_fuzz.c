/* Fuzzing the placement cache loader: thousands of random mutations and
 * truncations of a valid cache go through the parser (and some through the
 * file loader). Each must come back as a status — OK, format error or
 * mismatch — never a crash or an out-of-bounds access (the suite also runs
 * under AddressSanitizer/UBSan), and whatever loads must satisfy every
 * invariant of a valid cache. Half of the mutants get their checksum
 * recomputed so that the semantic checks behind it are exercised too.
 * MOEFUSE_FUZZ_ITERS scales the run (default 6000). The JSON parser also
 * gets random bytes, and large objects with and without a repeated key. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "placement_fixture.h"

static long iters(void)
{
    const char *e = getenv("MOEFUSE_FUZZ_ITERS");
    long n = e && *e ? strtol(e, NULL, 10) : 0;
    return n > 0 ? n : 6000;
}

static char *base_text(int with_gpu, size_t *len)
{
    mf_placement *p = pcf_make(with_gpu);
    char *t = mf_placement_to_json(p, len);
    mf_placement_free(p);
    cr_assert_not_null(t);
    return t;
}

/* Bytes that matter to a JSON parser. */
static const char interesting[] = "{}[],:\"\\-+.eE0123456789 \n\tnulltruefalse";

static size_t mutate(mft_rng *r, char *buf, size_t len, size_t cap)
{
    int n_ops = (int)mft_int(r, 1, 4);
    for (int o = 0; o < n_ops; o++) {
        int kind = (int)mft_int(r, 0, 7);
        size_t at = len ? (size_t)mft_int(r, 0, (int64_t)len - 1) : 0;
        switch (kind) {
        case 0: /* flip a bit */
            if (len)
                buf[at] = (char)(buf[at] ^ (1 << mft_int(r, 0, 7)));
            break;
        case 1: /* any byte */
            if (len)
                buf[at] = (char)mft_int(r, 0, 255);
            break;
        case 2: /* a syntax byte */
            if (len)
                buf[at] = interesting[mft_int(r, 0, sizeof interesting - 2)];
            break;
        case 3: { /* delete a range */
            size_t n = (size_t)mft_int(r, 1, 64);
            if (at + n > len)
                n = len - at;
            memmove(buf + at, buf + at + n, len - at - n);
            len -= n;
            break;
        }
        case 4: { /* insert random bytes */
            size_t n = (size_t)mft_int(r, 1, 16);
            if (len + n > cap)
                break;
            memmove(buf + at + n, buf + at, len - at);
            for (size_t i = 0; i < n; i++)
                buf[at + i] = (char)mft_int(r, 0, 255);
            len += n;
            break;
        }
        case 5: { /* duplicate a range (repeats members, nests deeper) */
            size_t n = (size_t)mft_int(r, 1, 256);
            if (at + n > len)
                n = len - at;
            if (len + n > cap)
                break;
            memmove(buf + at + n, buf + at, len - at);
            len += n;
            break;
        }
        case 6: /* truncate */
            len = at;
            break;
        default: { /* replace a digit run with an extreme number */
            static const char *const nums[] = {
                "-1", "1e308", "1e999", "-0", "4294967296", "99999999999999999999",
                "0.000001", "65537", "-65536", "3.5", "1e-320"};
            const char *s = nums[mft_int(r, 0, 10)];
            size_t sl = strlen(s);
            size_t i = at;
            while (i < len && !(buf[i] >= '0' && buf[i] <= '9'))
                i++;
            size_t j = i;
            while (j < len && ((buf[j] >= '0' && buf[j] <= '9') ||
                               buf[j] == '.' || buf[j] == 'e' ||
                               buf[j] == '-'))
                j++;
            if (i >= len || len - (j - i) + sl > cap)
                break;
            memmove(buf + i + sl, buf + j, len - j);
            memcpy(buf + i, s, sl);
            len = len - (j - i) + sl;
            break;
        }
        }
    }
    return len;
}

static void check_one(const char *buf, size_t len, const mf_fingerprint *fp,
                      int *n_ok)
{
    /* The parser gets an exact-size heap copy: any read past the end is an
     * AddressSanitizer error. */
    char *exact = malloc(len ? len : 1);
    cr_assert_not_null(exact);
    memcpy(exact, buf, len);
    mf_placement *p = (mf_placement *)0x1;
    mf_status st = mf_placement_parse(exact, len, fp, &p);
    cr_assert(st == MF_OK || st == MF_ERR_CACHE_FORMAT ||
                  st == MF_ERR_CACHE_MISMATCH,
              "unexpected status %d", (int)st);
    if (st == MF_OK) {
        cr_assert(pcf_valid(p), "a loaded cache breaks an invariant");
        mf_placement_free(p);
        (*n_ok)++;
    } else {
        cr_assert_eq(p, (mf_placement *)0x1, "output written on error");
    }
    free(exact);
}

Test(dispatch, cache_fuzz_mutations, .timeout = 600)
{
    mft_rng r = mft_rng_make(__LINE__);
    for (int with_gpu = 0; with_gpu < 2; with_gpu++) {
        size_t blen;
        char *base = base_text(with_gpu, &blen);
        mf_fingerprint fp = pcf_fingerprint(with_gpu);
        size_t cap = blen + 4096;
        char *buf = malloc(cap);
        cr_assert_not_null(buf);
        int n_ok = 0, n_resigned_ok = 0;
        long n = iters();
        for (long it = 0; it < n; it++) {
            memcpy(buf, base, blen);
            size_t len = mutate(&r, buf, blen, cap);
            int resign = (it & 1) && pcf_resign(buf, len);
            int before = n_ok;
            check_one(buf, len, (it % 3) ? &fp : NULL, &n_ok);
            n_resigned_ok += resign && n_ok > before;
        }
        /* Sanity of the harness: the untouched text loads. */
        int ok0 = 0;
        check_one(base, blen, &fp, &ok0);
        cr_expect_eq(ok0, 1, "the base cache does not load");
        fprintf(stderr, "cache fuzz (gpu=%d): %ld mutants, %d loaded (%d "
                        "re-signed)\n", with_gpu, n, n_ok, n_resigned_ok);
        free(buf);
        free(base);
    }
}

Test(dispatch, cache_fuzz_truncations, .timeout = 600)
{
    size_t blen;
    char *base = base_text(1, &blen);
    mf_fingerprint fp = pcf_fingerprint(1);
    /* Every proper prefix is rejected, except the one that only lacks the
     * final newline (still one complete JSON value). */
    for (size_t len = 0; len < blen; len++) {
        char *exact = malloc(len ? len : 1);
        cr_assert_not_null(exact);
        memcpy(exact, base, len);
        mf_placement *p = NULL;
        mf_status st = mf_placement_parse(exact, len, &fp, &p);
        if (len == blen - 1) {
            cr_expect_eq(st, MF_OK);
            mf_placement_free(p);
        } else {
            cr_assert_eq(st, MF_ERR_CACHE_FORMAT, "prefix of %zu bytes: %d",
                         len, (int)st);
        }
        free(exact);
    }
    free(base);
}

Test(dispatch, cache_fuzz_files)
{
    /* Through the file loader: mutants written to disk and read back. */
    mft_rng r = mft_rng_make(__LINE__);
    size_t blen;
    char *base = base_text(1, &blen);
    mf_fingerprint fp = pcf_fingerprint(1);
    char dir[] = "/tmp/mft_cachefuzz_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/placement.json", dir);
    size_t cap = blen + 4096;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    for (int it = 0; it < 300; it++) {
        memcpy(buf, base, blen);
        size_t len = mutate(&r, buf, blen, cap);
        if (it & 1)
            pcf_resign(buf, len);
        FILE *f = fopen(path, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(fwrite(buf, 1, len, f), len);
        fclose(f);
        mf_placement *p = NULL;
        mf_status st = mf_placement_load(path, &fp, &p);
        cr_assert(st == MF_OK || st == MF_ERR_CACHE_FORMAT ||
                      st == MF_ERR_CACHE_MISMATCH,
                  "unexpected status %d", (int)st);
        if (st == MF_OK) {
            cr_assert(pcf_valid(p));
            mf_placement_free(p);
        }
    }
    unlink(path);
    rmdir(dir);
    free(buf);
    free(base);
}

Test(dispatch, json_fuzz_random_bytes)
{
    /* Random short byte strings over the JSON alphabet straight into the
     * JSON parser: accepted or rejected, never more. */
    mft_rng r = mft_rng_make(__LINE__);
    for (int it = 0; it < 20000; it++) {
        size_t len = (size_t)mft_int(&r, 0, 48);
        char *b = malloc(len ? len : 1);
        cr_assert_not_null(b);
        for (size_t i = 0; i < len; i++)
            b[i] = (it & 1) ? interesting[mft_int(&r, 0, sizeof interesting - 2)]
                            : (char)mft_int(&r, 0, 255);
        mf_json_doc *d = (mf_json_doc *)0x1;
        int rc = mf_json_parse(b, len, &d, NULL);
        cr_assert(rc == 0 || rc == -1);
        if (rc == 0)
            mf_json_free(d);
        else
            cr_assert_null(d);
        free(b);
    }
}

/* ---- large objects ------------------------------------------------------ */

typedef struct tbuf {
    char *p;
    size_t n, cap;
} tbuf;

static void tput(tbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* Key number v, in a few shapes (shared prefixes, one a prefix of
 * another's, different lengths); distinct numbers give distinct keys. */
static void key_of(int v, char *k, size_t cap)
{
    switch (v % 3) {
    case 0: snprintf(k, cap, "%d", v); break;
    case 1: snprintf(k, cap, "model.layers.%d", v); break;
    default: snprintf(k, cap, "model.layers.%d.mlp", v); break;
    }
}

Test(dispatch, json_fuzz_large_objects)
{
    /* Objects of 0 to 3,000 members (either side of the size where the
     * parser switches from a linear search to a sorted index), at the root
     * or nested, in random key order. Half of them carry one key twice, at
     * random places, the second time possibly spelled with a \u escape:
     * refused, stopping at the second occurrence. The others: every member
     * found by its key, and keys not in the object not found. */
    mft_rng r = mft_rng_make(__LINE__);
    for (int it = 0; it < 120; it++) {
        int m = (int)(it % 3 ? mft_int(&r, 0, 40) : mft_int(&r, 0, 3000));
        int *num = malloc((size_t)(m ? m : 1) * sizeof *num);
        cr_assert_not_null(num);
        /* m distinct numbers out of [0, 2m + 3), in random order */
        int span = 2 * m + 3, have = 0;
        for (int v = 0; v < span && have < m; v++)
            if (mft_int(&r, 0, span - v - 1) < m - have)
                num[have++] = v;
        cr_assert_eq(have, m);
        for (int i = m - 1; i > 0; i--) {
            int j = (int)mft_int(&r, 0, i), t = num[i];
            num[i] = num[j];
            num[j] = t;
        }
        int dup_a = -1, dup_b = -1, escaped = 0;
        if (m >= 2 && (it & 1)) {
            dup_a = (int)mft_int(&r, 0, m - 2);
            dup_b = (int)mft_int(&r, dup_a + 1, m - 1);
            num[dup_b] = num[dup_a];
            escaped = (int)mft_int(&r, 0, 1);
        }
        int nested = (int)mft_int(&r, 0, 1);
        tbuf b = {0};
        if (nested)
            tput(&b, "[1,{\"x\":{", 9);
        else
            tput(&b, "{", 1);
        size_t dup_off = 0;
        for (int i = 0; i < m; i++) {
            char k[48], s[96];
            key_of(num[i], k, sizeof k);
            if (i)
                tput(&b, ",", 1);
            if (i == dup_b)
                dup_off = b.n;
            int n = i == dup_b && escaped
                        ? snprintf(s, sizeof s, "\"\\u%04x%s\":%d", k[0], k + 1, i)
                        : snprintf(s, sizeof s, "\"%s\":%d", k, i);
            tput(&b, s, (size_t)n);
        }
        tput(&b, nested ? "}},2]" : "}", nested ? 5 : 1);
        mf_json_doc *d = (mf_json_doc *)0x1;
        size_t off = 0;
        int rc = mf_json_parse(b.p, b.n, &d, &off);
        if (dup_b >= 0) {
            cr_assert_eq(rc, -1, "members %d, repeated %d and %d", m, dup_a,
                         dup_b);
            cr_assert_null(d);
            cr_assert_eq(off, dup_off, "members %d", m);
        } else {
            cr_assert_eq(rc, 0, "members %d", m);
            const mf_json *o = mf_json_root(d);
            if (nested)
                o = mf_json_get(&o->items[1], "x");
            cr_assert(o && o->type == MF_JSON_OBJECT);
            cr_assert_eq(o->len, (size_t)m);
            cr_assert_eq(o->order != NULL, m > MF_JSON_SMALL_OBJECT);
            for (int i = 0; i < m; i++) {
                char k[48];
                key_of(num[i], k, sizeof k);
                const mf_json *v = mf_json_get(o, k);
                cr_assert_eq(v, &o->items[i], "members %d: %s", m, k);
                cr_assert_str_eq(o->keys[i], k);
            }
            /* the span's unused numbers, and every key with a letter more */
            char *used = calloc((size_t)span, 1);
            cr_assert_not_null(used);
            for (int i = 0; i < m; i++)
                used[num[i]] = 1;
            for (int v = 0; v < span; v++) {
                char k[48];
                key_of(v, k, sizeof k);
                if (!used[v])
                    cr_assert_null(mf_json_get(o, k), "%s", k);
                size_t kl = strlen(k);
                k[kl] = 'x';
                k[kl + 1] = 0;
                cr_assert_null(mf_json_get(o, k), "%s", k);
            }
            free(used);
            cr_assert_null(mf_json_get(o, ""));
            mf_json_free(d);
        }
        free(b.p);
        free(num);
    }
}
