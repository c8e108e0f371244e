/* Placement cache: JSON parser and writer, cache round trip, fingerprint
 * mismatch, version, corrupt/truncated/hostile files, atomic writes under
 * concurrent writers, loading into a context. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "common.h"
#include "placement_fixture.h"

/* ------------------------------------------------------------- helpers -- */

static char *tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/mft_cache_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    return dir;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void write_file(const char *path, const char *s, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(s, 1, n, f), n);
    fclose(f);
}

static int parse_ok(const char *s)
{
    mf_json_doc *d = NULL;
    int rc = mf_json_parse(s, strlen(s), &d, NULL);
    mf_json_free(d);
    return rc == 0;
}

static void expect_same(const mf_placement *a, const mf_placement *b)
{
    cr_assert(mf_fingerprint_equal(&a->fp, &b->fp));
    cr_expect_str_eq(a->created, b->created);
    cr_expect_str_eq(a->profile_mode, b->profile_mode);
    cr_expect_eq(a->profile_seconds, b->profile_seconds);
    cr_expect_eq(a->complete, b->complete);
    cr_assert_eq(a->n_pts, b->n_pts);
    for (size_t i = 0; i < a->n_pts; i++) {
        cr_expect_eq(mf_shape_cmp(&a->pts[i].s, &b->pts[i].s), 0);
        cr_expect_eq(a->pts[i].dev, b->pts[i].dev);
        /* Numbers are written in their shortest exact form: bit-equal. */
        cr_expect_eq(a->pts[i].median_us, b->pts[i].median_us);
        cr_expect_eq(a->pts[i].p10_us, b->pts[i].p10_us);
        cr_expect_eq(a->pts[i].p90_us, b->pts[i].p90_us);
        cr_expect_eq(a->pts[i].reps, b->pts[i].reps);
    }
    cr_assert_eq(a->n_models, b->n_models);
    for (size_t i = 0; i < a->n_models; i++)
        cr_expect_eq(memcmp(&a->models[i], &b->models[i], sizeof a->models[i]),
                     0, "model %zu differs", i);
    cr_assert_eq(a->n_dec, b->n_dec);
    cr_expect_eq(a->gpu.measured, b->gpu.measured);
    cr_expect_eq(a->gpu.roundtrip_us, b->gpu.roundtrip_us);
    cr_expect_eq(a->gpu.h2d.n, b->gpu.h2d.n);
    for (int i = 0; i < a->gpu.h2d.n; i++)
        cr_expect_eq(a->gpu.h2d.us[i], b->gpu.h2d.us[i]);
    cr_expect_eq(a->gpu.d2h.b_us_per_byte, b->gpu.d2h.b_us_per_byte);
    cr_assert_eq(a->n_forms, b->n_forms);
    for (size_t i = 0; i < a->n_forms; i++) {
        cr_expect_eq(mf_shape_cmp(&a->forms[i].s, &b->forms[i].s), 0);
        cr_expect_eq(a->forms[i].form, b->forms[i].form);
        cr_expect_eq(a->forms[i].us[0], b->forms[i].us[0]);
        cr_expect_eq(a->forms[i].us[1], b->forms[i].us[1]);
        cr_expect_eq(a->forms[i].value, b->forms[i].value);
    }
}

/* ---------------------------------------------------------------- JSON -- */

Test(dispatch, json_accepts_valid)
{
    const char *ok[] = {
        "0", "-0", "1.5e-3", "-12.25E+2", "true", "false", "null", "\"\"",
        "[]", "{}", " [1, 2 ,3 ] ", "{\"a\":{\"b\":[null,true]}}",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"",
        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "1e308"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_expect(parse_ok(ok[i]), "rejected valid: %s", ok[i]);

    mf_json_doc *d = NULL;
    const char *t = "{\"s\":\"a\\u00e9\\ud83d\\ude00\",\"n\":-2.5,\"i\":42,"
                    "\"a\":[1,\"x\"]}";
    cr_assert_eq(mf_json_parse(t, strlen(t), &d, NULL), 0);
    const mf_json *r = mf_json_root(d);
    const char *s;
    cr_assert(mf_json_strv(mf_json_get(r, "s"), &s));
    cr_expect_str_eq(s, "a\xc3\xa9\xf0\x9f\x98\x80");
    double v;
    cr_assert(mf_json_num(mf_json_get(r, "n"), &v));
    cr_expect_eq(v, -2.5);
    int64_t i = 0;
    cr_expect(mf_json_int(mf_json_get(r, "i"), 0, 100, &i));
    cr_expect_eq(i, 42);
    cr_expect(!mf_json_int(mf_json_get(r, "i"), 0, 41, &i), "range");
    cr_expect(!mf_json_int(mf_json_get(r, "n"), -10, 10, &i), "fraction");
    cr_expect_eq(mf_json_get(r, "a")->len, 2);
    cr_expect_null(mf_json_get(r, "missing"));
    cr_expect_null(mf_json_get(mf_json_get(r, "a"), "s"), "not an object");
    mf_json_free(d);
}

Test(dispatch, json_rejects_invalid)
{
    const char *bad[] = {
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "-", "1e",
        "+1", "NaN", "Infinity", "1e999", "-1e999", "\"\\x\"", "\"\x01\"",
        "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\u0000\"",
        "\"\\u12\"", "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "tru", "nul", "True", "[1 2]",
        "{\"a\" 1}", "{1:2}", "{\"a\":1,\"a\":2}", "{} x", "\xef\xbb\xbf{}",
        "\"abc", "[\"a\\\"]", "[1]]", "{\"a\":}", "00", "1.5.2", "--1",
        "0x10", "'a'", "[,1]", "\"\\",
        "123456789012345678901234567890123456789012345678901234567890123456"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect(!parse_ok(bad[i]), "accepted invalid #%zu: %s", i, bad[i]);
    /* An embedded NUL byte is not JSON either. */
    mf_json_doc *d = (mf_json_doc *)0x1;
    cr_expect_eq(mf_json_parse("[1,\0 2]", 7, &d, NULL), -1);
    cr_expect_null(d);
    cr_expect_eq(mf_json_parse(NULL, 0, &d, NULL), -1);
}

Test(dispatch, json_limits)
{
    char buf[512];
    /* MF_JSON_MAX_DEPTH nested arrays parse, one more does not. */
    for (int depth = MF_JSON_MAX_DEPTH; depth <= MF_JSON_MAX_DEPTH + 1;
         depth++) {
        int n = 0;
        for (int i = 0; i < depth; i++)
            buf[n++] = '[';
        for (int i = 0; i < depth; i++)
            buf[n++] = ']';
        buf[n] = 0;
        cr_expect_eq(parse_ok(buf), depth == MF_JSON_MAX_DEPTH, "depth %d",
                     depth);
    }
    /* Deep nesting far beyond the limit must not recurse. */
    size_t big = 1 << 20;
    char *deep = malloc(big);
    cr_assert_not_null(deep);
    memset(deep, '[', big);
    mf_json_doc *d = NULL;
    cr_expect_eq(mf_json_parse(deep, big, &d, NULL), -1);
    free(deep);
    /* No fixed cap on members: 20,000 (a large safetensors header), each
     * found by key; a key repeated far apart is refused at its second
     * occurrence. */
    enum { M = 20000 };
    mf_jw w;
    mf_jw_init(&w, 0);
    mf_jw_object(&w);
    for (int i = 0; i < M; i++) {
        char k[32];
        snprintf(k, sizeof k, "model.layers.%d.w", (i * 7919) % M);
        mf_jw_key(&w, k);
        mf_jw_int(&w, (i * 7919) % M);
    }
    mf_jw_end(&w);
    cr_assert(!w.failed);
    cr_assert_eq(mf_json_parse(w.buf, w.len, &d, NULL), 0);
    const mf_json *root = mf_json_root(d);
    cr_assert_eq(root->len, M);
    for (int i = 0; i < M; i++) {
        char k[32];
        snprintf(k, sizeof k, "model.layers.%d.w", i);
        int64_t v = -1;
        cr_assert(mf_json_int(mf_json_get(root, k), 0, M, &v), "%s", k);
        cr_assert_eq(v, i);
    }
    cr_expect_null(mf_json_get(root, "model.layers.20000.w"));
    cr_expect_null(mf_json_get(root, ""));
    cr_expect_null(mf_json_get(root, "model.layers.1"));
    mf_json_free(d);
    char *dup = strstr(w.buf, "\"model.layers.4321.w\"");
    char *dup2 = strstr(w.buf, "\"model.layers.1234.w\"");
    cr_assert(dup && dup2);
    memcpy(dup, dup2, strlen("\"model.layers.1234.w\""));
    size_t off = 0;
    d = (mf_json_doc *)0x1;
    cr_expect_eq(mf_json_parse(w.buf, w.len, &d, &off), -1);
    cr_expect_null(d);
    cr_expect_eq(off, (size_t)((dup > dup2 ? dup : dup2) - w.buf),
                 "stopped at the second occurrence");
    mf_jw_free(&w);
    /* A repeated key in a small object: the same offset. */
    const char *small = "{\"a\":1,\"b\":2,\"a\":3}";
    cr_expect_eq(mf_json_parse(small, strlen(small), &d, &off), -1);
    cr_expect_eq(off, 13);

    /* Values in all: mf_json_max_nodes(len). An array of n 7-digit
     * numbers is 8n + 1 bytes and n + 1 values: one value over the budget
     * until 8 more bytes of trailing space lift it by one. */
    size_t n = MF_JSON_MIN_NODES + 4096;
    size_t cap = 8 * n + 16;
    char *t = malloc(cap);
    cr_assert_not_null(t);
    size_t len = 0;
    t[len++] = '[';
    for (size_t i = 0; i < n; i++) {
        memcpy(t + len, i ? ",1000000" : "1000000", i ? 8 : 7);
        len += i ? 8 : 7;
    }
    t[len++] = ']';
    cr_assert_eq(len, 8 * n + 1);
    cr_assert_eq(mf_json_max_nodes(len), n);
    cr_expect_eq(mf_json_parse(t, len, &d, NULL), -1, "n + 1 values");
    memset(t + len, ' ', 8);
    cr_assert_eq(mf_json_max_nodes(len + 8), n + 1);
    cr_assert_eq(mf_json_parse(t, len + 8, &d, NULL), 0, "budget n + 1");
    cr_expect_eq(mf_json_root(d)->len, n);
    mf_json_free(d);
    /* Below the floor: MF_JSON_MIN_NODES values in all, whatever the
     * length ("[0,0,...]": 2 bytes a value). */
    for (size_t m = MF_JSON_MIN_NODES - 1; m <= MF_JSON_MIN_NODES; m++) {
        len = 0;
        t[len++] = '[';
        for (size_t i = 0; i < m; i++) {
            if (i)
                t[len++] = ',';
            t[len++] = '0';
        }
        t[len++] = ']';
        cr_assert_eq(mf_json_max_nodes(len), MF_JSON_MIN_NODES);
        int rc = mf_json_parse(t, len, &d, NULL);
        cr_expect_eq(rc, m + 1 <= MF_JSON_MIN_NODES ? 0 : -1, "%zu values",
                     m + 1);
        if (rc == 0)
            mf_json_free(d);
    }
    free(t);
}

Test(dispatch, json_writer_round_trip)
{
    mft_rng r = mft_rng_make(__LINE__);
    mf_jw w;
    mf_jw_init(&w, 1);
    mf_jw_object(&w);
    mf_jw_key(&w, "str \"q\"\n");
    mf_jw_str(&w, "tab\there \x01 \\ \xc3\xa9");
    mf_jw_key(&w, "nums");
    mf_jw_array(&w);
    double vals[200];
    for (int i = 0; i < 200; i++) {
        uint64_t bits = mft_next(&r);
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            v = (double)(int64_t)bits * 1e-300;
        if (i < 4)
            v = (double[]){0.1, -0.0, 5e-324, 1.7976931348623157e308}[i];
        vals[i] = v;
        mf_jw_num(&w, v);
    }
    mf_jw_num(&w, NAN); /* written as null */
    mf_jw_end(&w);
    mf_jw_key(&w, "i");
    mf_jw_int(&w, INT64_MIN);
    mf_jw_key(&w, "empty");
    mf_jw_object(&w);
    mf_jw_end(&w);
    mf_jw_end(&w);
    cr_assert(!w.failed);
    mf_json_doc *d = NULL;
    cr_assert_eq(mf_json_parse(w.buf, w.len, &d, NULL), 0, "%s", w.buf);
    const mf_json *root = mf_json_root(d);
    const char *s;
    cr_assert(mf_json_strv(mf_json_get(root, "str \"q\"\n"), &s));
    cr_expect_str_eq(s, "tab\there \x01 \\ \xc3\xa9");
    const mf_json *a = mf_json_get(root, "nums");
    cr_assert_eq(a->len, 201);
    for (int i = 0; i < 200; i++) {
        double v;
        cr_assert(mf_json_num(&a->items[i], &v));
        cr_expect(memcmp(&v, &vals[i], sizeof v) == 0, "%.17g != %.17g", v,
                  vals[i]);
    }
    cr_expect_eq(a->items[200].type, MF_JSON_NULL);
    mf_json_free(d);
    mf_jw_free(&w);

    /* Misuse fails the writer instead of emitting bad JSON. */
    mf_jw_init(&w, 0);
    mf_jw_array(&w);
    mf_jw_key(&w, "k"); /* key in an array */
    cr_expect(w.failed);
    mf_jw_free(&w);
    mf_jw_init(&w, 0);
    mf_jw_object(&w);
    mf_jw_int(&w, 1); /* value without a key */
    cr_expect(w.failed);
    mf_jw_free(&w);
    mf_jw_init(&w, 0);
    mf_jw_end(&w); /* nothing open */
    cr_expect(w.failed);
    mf_jw_free(&w);
}

/* --------------------------------------------------------------- cache -- */

Test(dispatch, cache_round_trip)
{
    for (int with_gpu = 0; with_gpu < 2; with_gpu++) {
        mf_placement *p = pcf_make(with_gpu);
        cr_assert(pcf_valid(p));
        size_t len;
        char *text = mf_placement_to_json(p, &len);
        cr_assert_not_null(text);
        mf_placement *q = NULL;
        cr_assert_eq(mf_placement_parse(text, len, &p->fp, &q), MF_OK);
        expect_same(p, q);
        /* The text form is canonical: writing it again gives the same. */
        size_t len2;
        char *text2 = mf_placement_to_json(q, &len2);
        cr_assert_eq(len, len2);
        cr_expect_eq(memcmp(text, text2, len), 0);

        char *dir = tmpdir();
        char path[256];
        snprintf(path, sizeof path, "%s/sub/dir/placement.json", dir);
        cr_assert_eq(mf_placement_save(q, path), MF_OK);
        mf_placement *f = NULL;
        cr_assert_eq(mf_placement_load(path, &p->fp, &f), MF_OK);
        expect_same(p, f);
        struct stat sb;
        cr_assert_eq(stat(path, &sb), 0);
        cr_expect_eq((size_t)sb.st_size, len);
        rm_tree(dir);
        free(text);
        free(text2);
        mf_placement_free(p);
        mf_placement_free(q);
        mf_placement_free(f);
    }
}

Test(dispatch, cache_fingerprint_mismatch)
{
    mf_placement *p = pcf_make(1);
    size_t len;
    char *text = mf_placement_to_json(p, &len);
    cr_assert_not_null(text);
    for (int field = 0; field < 12; field++) {
        mf_fingerprint e = p->fp;
        switch (field) {
        case 0: e.cpu_model[0] = 'G'; break;
        case 1: snprintf(e.arch, sizeof e.arch, "aarch64"); break;
        case 2: snprintf(e.features, sizeof e.features, "avx avx2"); break;
        case 3: e.physical_cores++; break;
        case 4: e.logical_cpus++; break;
        case 5: snprintf(e.isa, sizeof e.isa, "avx512"); break;
        case 6: e.threads = 1; break;
        case 7: e.n_gpus = 0; break;
        case 8: e.gpu[0].uuid[31] = '0'; break;
        case 9: e.gpu[0].driver_version++; break;
        case 10: e.gpu[0].device_id++; break;
        default: snprintf(e.library, sizeof e.library, "9.9.9"); break;
        }
        cr_assert(!mf_fingerprint_equal(&e, &p->fp), "field %d", field);
        cr_expect_neq(mf_fingerprint_hash(&e), mf_fingerprint_hash(&p->fp));
        mf_placement *q = (mf_placement *)0x1;
        cr_expect_eq(mf_placement_parse(text, len, &e, &q),
                     MF_ERR_CACHE_MISMATCH, "field %d", field);
        cr_expect_eq(q, (mf_placement *)0x1);
    }
    free(text);
    mf_placement_free(p);
}

/* Replaces the first `from` after `after` with `to`, re-signs, and
 * returns the status of parsing the result against the fixture's
 * fingerprint. */
static mf_status edit_status(const char *after, const char *from,
                             const char *to)
{
    mf_placement *p = pcf_make(1);
    size_t len;
    char *text = mf_placement_to_json(p, &len);
    cr_assert_not_null(text);
    char *start = strstr(text, after);
    cr_assert_not_null(start, "no %s", after);
    char *at = strstr(start, from);
    cr_assert_not_null(at, "no %s after %s", from, after);
    size_t fl = strlen(from), tl = strlen(to);
    char *out = malloc(len - fl + tl + 1);
    cr_assert_not_null(out);
    size_t pre = (size_t)(at - text);
    memcpy(out, text, pre);
    memcpy(out + pre, to, tl);
    memcpy(out + pre + tl, at + fl, len - pre - fl + 1);
    size_t olen = len - fl + tl;
    cr_assert(pcf_resign(out, olen));
    mf_placement *q = NULL;
    mf_status st = mf_placement_parse(out, olen, &p->fp, &q);
    mf_placement_free(q);
    mf_placement_free(p);
    free(out);
    free(text);
    return st;
}

Test(dispatch, cache_hostile_fields)
{
    /* A no-op edit keeps it valid (the harness itself works). */
    cr_expect_eq(edit_status("\"measurements\"", "\"reps\": 11",
                             "\"reps\": 11"), MF_OK);
    cr_expect_eq(edit_status("\"version\"", "1", "2"), MF_ERR_CACHE_FORMAT);
    cr_expect_eq(edit_status("\"format\"", "moefuse-placement-cache",
                             "moefuse-placement-cachf"),
                 MF_ERR_CACHE_FORMAT);
    struct {
        const char *after, *from, *to;
    } edits[] = {
        {"\"measurements\"", "\"median_us\": ", "\"median_us\": -"},
        {"\"measurements\"", "\"p10_us\": ", "\"p10_us\": 9"},
        {"\"measurements\"", "\"reps\": 11", "\"reps\": 0"},
        {"\"measurements\"", "\"reps\": 11", "\"reps\": 11.5"},
        {"\"measurements\"", "\"T\": 2,", "\"T\": 3,"},
        {"\"measurements\"", "\"T\": 64,", "\"T\": 65,"},
        {"\"measurements\"", "\"T\": 1,", "\"T\": 0,"},
        {"\"measurements\"", "\"op\": \"gating\"", "\"op\": \"gatin\""},
        {"\"measurements\"", "\"wtype\": \"f32\"", "\"wtype\": \"f64\""},
        {"\"measurements\"", "\"dev\": \"gpu\"", "\"dev\": \"tpu\""},
        {"\"measurements\"", "\"dev\": \"gpu\"", "\"dev\": \"cpu\""},
        {"\"measurements\"", "\"N\": 768,", "\"N\": 16777217,"},
        {"\"measurements\"", "\"mode\": 0", "\"mode\": \"0\""},
        {"\"models\"", "\"a_us\": ", "\"a_us\": -1"},
        {"\"models\"", "\"wtype\": \"q4_0\"", "\"wtype\": \"any\""},
        {"\"models\"", "\"points\": ", "\"points\": -"},
        {"\"decisions\"", "\"dev\": \"gpu\"", "\"dev\": \"cpu\""},
        {"\"decisions\"", "\"dev\": \"cpu\"", "\"dev\": \"gpu\""},
        {"\"decisions\"", "\"cpu_us\": ", "\"cpu_us\": 1"},
        {"\"fingerprint\"", "\"hash\": \"", "\"hash\": \"0"},
        {"\"fingerprint\"", "\"threads\": 4", "\"threads\": 0"},
        {"\"fingerprint\"", "\"uuid\": \"00112233445566778899aabbccddeeff\"",
         "\"uuid\": \"00112233445566778899aabbccddeefg\""},
        {"\"gpu\": {", "\"roundtrip_us\": ", "\"roundtrip_us\": -"},
        {"\"gpu\": {", "\"measured\": true", "\"measured\": 1"},
        {"\"profile\"", "\"complete\": true", "\"complete\": null"},
        /* kernel forms: the value must be what the two times give */
        {"\"forms\"", "\"value\": 1", "\"value\": 0"},
        {"\"forms\"", "\"value\": -1", "\"value\": 1"},
        {"\"forms\"", "\"value\": 1", "\"value\": 2"},
        {"\"forms\"", "\"form\": \"gating_rank\"", "\"form\": \"gating_rnk\""},
        {"\"forms\"", "\"form\": \"gating_rank\"", "\"form\": \"dn_slots\""},
        {"\"forms\"", "\"us\": [", "\"us\": [-"},
        {"\"forms\"", "\"us\": [", "\"us\": [0, "},
        {"\"forms\"", "\"us\": [", "\"us\": \"x\", \"u\": ["},
        {"\"forms\"", "\"T\": 4,", "\"T\": 1,"},
        {"\"forms\"", "\"T\": 4,", "\"T\": 33,"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++)
        cr_expect_eq(edit_status(edits[i].after, edits[i].from, edits[i].to),
                     MF_ERR_CACHE_FORMAT, "edit %zu (%s -> %s) accepted", i,
                     edits[i].from, edits[i].to);
    /* GPU rows in a cache whose machine has no GPU. */
    mf_placement *p = pcf_make(1);
    p->fp = pcf_fingerprint(0);
    char *text = mf_placement_to_json(p, NULL);
    cr_assert_not_null(text);
    mf_placement *q = NULL;
    cr_expect_eq(mf_placement_parse(text, strlen(text), NULL, &q),
                 MF_ERR_CACHE_FORMAT);
    free(text);
    mf_placement_free(p);
}

Test(dispatch, cache_forms)
{
    mf_placement *p = pcf_make(1);
    cr_assert(pcf_valid(p));
    cr_assert_eq(p->n_forms, 5, "forms kept: %zu", p->n_forms);
    /* lookup by bucket: gating E=128 k=8 by rank at T = 1, the built-in
     * choice at T = 4 (within the margin), rounds at T = 16; T = 2 and
     * other shapes were not measured */
    mf_op_shape g = {.op = MF_OP_GATING, .T = 1, .E = 128, .k = 8,
                     .wtype = MF_TYPE_F32};
    mf_gpu_forms f;
    const int want[5] = {1, MF_GPU_FORM_AUTO, 0, MF_GPU_FORM_AUTO,
                         MF_GPU_FORM_AUTO};
    const int64_t Ts[5] = {1, 4, 16, 2, 64};
    for (int i = 0; i < 5; i++) {
        g.T = Ts[i];
        mf_placement_forms(p, &g, &f);
        cr_expect_eq(f.v[MF_GPU_FORM_GATING_RANK], want[i], "T=%lld",
                     (long long)Ts[i]);
        for (int k = 0; k < MF_GPU_FORM_COUNT_; k++)
            if (k != MF_GPU_FORM_GATING_RANK)
                cr_expect_eq(f.v[k], MF_GPU_FORM_AUTO);
    }
    g.T = 1;
    g.k = 4;
    mf_placement_forms(p, &g, &f);
    cr_expect_eq(f.v[MF_GPU_FORM_GATING_RANK], MF_GPU_FORM_AUTO, "k=4");
    mf_op_shape d = {.op = MF_OP_MOE_DOWN, .T = 1, .E = 128, .k = 8,
                     .N = 2048, .K = 768, .wtype = MF_TYPE_Q4_0};
    mf_placement_forms(p, &d, &f);
    cr_expect_eq(f.v[MF_GPU_FORM_DN_SLOTS], 1);
    cr_expect_eq(f.v[MF_GPU_FORM_DN_XSTAGE], MF_GPU_FORM_AUTO, "1.7%%");
    cr_expect_eq(f.v[MF_GPU_FORM_GATING_RANK], MF_GPU_FORM_AUTO);

    /* a form of another op, or a duplicate added later (it wins) */
    g.k = 8;
    mf_pc_form bad = {.s = g, .form = MF_GPU_FORM_DN_SLOTS, .us = {1, 2}};
    cr_expect_eq(mf_placement_add_form(p, &bad), MF_ERR_INVALID_ARG);
    mf_pc_form again = {.s = g, .form = MF_GPU_FORM_GATING_RANK,
                        .us = {5, 9}};
    cr_assert_eq(mf_placement_add_form(p, &again), MF_OK);
    cr_assert_eq(mf_placement_finish(p), MF_OK);
    cr_expect_eq(p->n_forms, 5);
    mf_placement_forms(p, &g, &f);
    cr_expect_eq(f.v[MF_GPU_FORM_GATING_RANK], 0, "the later one wins");

    /* a duplicate in a file is an error */
    size_t len;
    char *text = mf_placement_to_json(p, &len);
    cr_assert_not_null(text);
    char *fa = strstr(text, "\"forms\": [");
    cr_assert_not_null(fa);
    char *e0 = strstr(fa, "{"), *e1 = strstr(e0, "}");
    cr_assert(e0 && e1);
    size_t el = (size_t)(e1 - e0) + 1;
    char *dup = malloc(len + el + 8);
    cr_assert_not_null(dup);
    size_t pre = (size_t)(e1 + 1 - text);
    memcpy(dup, text, pre);
    memcpy(dup + pre, ", ", 2);
    memcpy(dup + pre + 2, e0, el);
    memcpy(dup + pre + 2 + el, e1 + 1, len - pre + 1);
    size_t dlen = len + el + 2;
    cr_assert(pcf_resign(dup, dlen));
    mf_placement *q = NULL;
    cr_expect_eq(mf_placement_parse(dup, dlen, &p->fp, &q),
                 MF_ERR_CACHE_FORMAT, "duplicate form");
    free(dup);

    /* a file written before forms existed has no "forms" member: valid,
     * with none */
    char *fe = strstr(fa, "\n  ]");
    cr_assert_not_null(fe);
    fe += 3; /* its ']' */
    char *old = malloc(len + 1);
    cr_assert_not_null(old);
    size_t a0 = (size_t)(fa - text), a1 = (size_t)(fe + 1 - text);
    memcpy(old, text, a0);
    /* drop `"forms": [...]` and the comma after it */
    size_t rest = a1 < len && text[a1] == ',' ? a1 + 1 : a1;
    memcpy(old + a0, text + rest, len - rest + 1);
    size_t olen = a0 + len - rest;
    cr_assert(pcf_resign(old, olen));
    cr_assert_eq(mf_placement_parse(old, olen, &p->fp, &q), MF_OK,
                 "%.*s", (int)olen, old);
    cr_expect_eq(q->n_forms, 0);
    cr_expect_eq(q->n_pts, p->n_pts);
    mf_placement_free(q);
    free(old);
    free(text);
    mf_placement_free(p);
}

Test(dispatch, cache_corrupt_and_truncated_files)
{
    char *dir = tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/placement.json", dir);
    mf_placement *p = pcf_make(1);
    size_t len;
    char *text = mf_placement_to_json(p, &len);
    cr_assert_not_null(text);
    mf_placement *q = (mf_placement *)0x1;

    cr_expect_eq(mf_placement_load(path, &p->fp, &q), MF_ERR_IO, "missing");
    write_file(path, "", 0);
    cr_expect_eq(mf_placement_load(path, &p->fp, &q), MF_ERR_CACHE_FORMAT);
    /* Truncated anywhere. */
    mft_rng r = mft_rng_make(__LINE__);
    for (int i = 0; i < 200; i++) {
        size_t n = (size_t)mft_int(&r, 0, (int64_t)len - 2);
        write_file(path, text, n);
        cr_expect_eq(mf_placement_load(path, &p->fp, &q), MF_ERR_CACHE_FORMAT,
                     "truncated at %zu", n);
    }
    /* One flipped bit anywhere before the checksum's value. */
    size_t sum = (size_t)(strstr(text, "\"checksum\"") - text) + 13;
    for (int i = 0; i < 200; i++) {
        size_t at = (size_t)mft_int(&r, 0, (int64_t)sum);
        char bit = (char)(1 << mft_int(&r, 0, 7));
        text[at] ^= bit;
        write_file(path, text, len);
        text[at] ^= bit;
        mf_status st = mf_placement_load(path, &p->fp, &q);
        cr_expect_eq(st, MF_ERR_CACHE_FORMAT, "bit flip at %zu: %d", at,
                     (int)st);
    }
    /* Trailing garbage after the document. */
    char *tail = malloc(len + 4);
    cr_assert_not_null(tail);
    memcpy(tail, text, len);
    memcpy(tail + len, "{}\n", 3);
    write_file(path, tail, len + 3);
    cr_expect_eq(mf_placement_load(path, &p->fp, &q), MF_ERR_CACHE_FORMAT);
    free(tail);
    /* Oversized (sparse) file: rejected without reading it. */
    int fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert(fd >= 0);
    cr_assert_eq(ftruncate(fd, (off_t)MF_PC_MAX_FILE + 1), 0);
    close(fd);
    cr_expect_eq(mf_placement_load(path, &p->fp, &q), MF_ERR_CACHE_FORMAT);
    /* A directory, and a FIFO (must not block). */
    unlink(path);
    cr_assert_eq(mkdir(path, 0700), 0);
    cr_expect_eq(mf_placement_load(path, &p->fp, &q), MF_ERR_CACHE_FORMAT);
    rmdir(path);
    cr_assert_eq(mkfifo(path, 0600), 0);
    cr_expect_eq(mf_placement_load(path, &p->fp, &q), MF_ERR_CACHE_FORMAT);
    unlink(path);
    cr_expect_eq(q, (mf_placement *)0x1, "output written on error");
    /* The intact text still loads. */
    write_file(path, text, len);
    cr_expect_eq(mf_placement_load(path, &p->fp, &q), MF_OK);
    mf_placement_free(q);
    /* Bad arguments. */
    cr_expect_eq(mf_placement_load(NULL, NULL, &q), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_placement_load(path, NULL, NULL), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_placement_parse(NULL, 0, NULL, &q), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_placement_save(NULL, path), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_placement_save(p, ""), MF_ERR_INVALID_ARG);
    /* Saving where no directory can be made. */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/placement.json/x/p.json", dir);
    cr_expect_eq(mf_placement_save(p, bad), MF_ERR_IO);
    free(text);
    mf_placement_free(p);
    rm_tree(dir);
}

Test(dispatch, cache_concurrent_writers, .timeout = 120)
{
    /* Several processes save different caches to one path at once while
     * this one reads it: every read sees one complete, valid cache. */
    char *dir = tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/placement.json", dir);
    enum { WRITERS = 6, ROUNDS = 40 };
    mf_fingerprint fp = pcf_fingerprint(1);
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            mf_placement *p = pcf_make(1);
            p->profile_seconds = 1000 + w; /* tells the writers apart */
            int bad = 0;
            for (int i = 0; i < ROUNDS; i++)
                bad |= mf_placement_save(p, path) != MF_OK;
            mf_placement_free(p);
            _exit(bad);
        }
        pids[w] = pid;
    }
    int reads = 0, seen[WRITERS] = {0};
    for (;;) {
        int running = 0;
        for (int w = 0; w < WRITERS; w++)
            running += pids[w] && waitpid(pids[w], NULL, WNOHANG) == 0;
        mf_placement *q = NULL;
        mf_status st = mf_placement_load(path, &fp, &q);
        cr_assert(st == MF_OK || st == MF_ERR_IO, "read %d: status %d", reads,
                  (int)st);
        if (st == MF_OK) {
            int w = (int)q->profile_seconds - 1000;
            cr_assert(w >= 0 && w < WRITERS);
            cr_assert(pcf_valid(q));
            seen[w] = 1;
            reads++;
            mf_placement_free(q);
        }
        if (!running)
            break;
    }
    for (int w = 0; w < WRITERS; w++) {
        int status = 0;
        waitpid(pids[w], &status, 0);
    }
    mf_placement *q = NULL;
    cr_assert_eq(mf_placement_load(path, &fp, &q), MF_OK);
    mf_placement_free(q);
    /* No temporary file is left behind. */
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        files += e->d_name[0] != '.';
    closedir(d);
    cr_expect_eq(files, 1);
    int writers_seen = 0;
    for (int w = 0; w < WRITERS; w++)
        writers_seen += seen[w];
    cr_log_info("%d reads, saw %d writers' files", reads, writers_seen);
    rm_tree(dir);
}

/* ------------------------------------------------------ context loading -- */

static mf_ctx *ctx_at(const char *path)
{
    mf_ctx_options o = mf_ctx_options_default();
    o.threads = 2;
    o.gpu = MF_GPU_DISABLED;
    o.cache_path = path;
    mf_ctx *c = NULL;
    cr_assert_eq(mf_ctx_create(&o, &c), MF_OK);
    return c;
}

Test(dispatch, cache_in_context)
{
    char *dir = tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/p.json", dir);
    mf_ctx *c = ctx_at(path);
    cr_expect_eq(mf_ctx_cache_status(c), MF_ERR_IO, "none yet");
    cr_expect_str_eq(mf_ctx_cache_path(c), path);

    /* A cache made for this very context loads. */
    mf_placement *p = pcf_make(0);
    cr_assert_eq(mf_fingerprint_make(c, &p->fp), MF_OK);
    cr_assert_eq(mf_placement_save(p, path), MF_OK);
    mf_ctx_destroy(c);
    c = ctx_at(path);
    cr_expect_eq(mf_ctx_cache_status(c), MF_OK);
    mf_ctx_destroy(c);

    /* Another thread count is another configuration. */
    mf_ctx_options o = mf_ctx_options_default();
    o.threads = 1;
    o.gpu = MF_GPU_DISABLED;
    o.cache_path = path;
    cr_assert_eq(mf_ctx_create(&o, &c), MF_OK);
    cr_expect_eq(mf_ctx_cache_status(c), MF_ERR_CACHE_MISMATCH);
    mf_ctx_destroy(c);

    /* Another machine. */
    p->fp = pcf_fingerprint(0);
    cr_assert_eq(mf_placement_save(p, path), MF_OK);
    c = ctx_at(path);
    cr_expect_eq(mf_ctx_cache_status(c), MF_ERR_CACHE_MISMATCH);
    mf_ctx_destroy(c);

    /* Corrupt. */
    write_file(path, "{\"format\": \"moefuse-placement-cache\"", 36);
    c = ctx_at(path);
    cr_expect_eq(mf_ctx_cache_status(c), MF_ERR_CACHE_FORMAT);
    mf_ctx_destroy(c);

    cr_expect_eq(mf_ctx_cache_status(NULL), MF_ERR_INVALID_ARG);
    cr_expect_null(mf_ctx_cache_path(NULL));
    mf_placement_free(p);
    rm_tree(dir);
}

Test(dispatch, cache_default_path)
{
    /* Each Criterion test runs in its own process: the environment is
     * ours to change. */
    char *dir = tmpdir();
    char want[300];
    setenv("XDG_CACHE_HOME", dir, 1);
    mf_ctx *c = ctx_at(NULL);
    snprintf(want, sizeof want, "%s/moefuse/placement.json", dir);
    cr_expect_str_eq(mf_ctx_cache_path(c), want);
    cr_expect_eq(mf_ctx_cache_status(c), MF_ERR_IO);
    mf_ctx_destroy(c);

    setenv("XDG_CACHE_HOME", "relative/dir", 1); /* ignored, as XDG says */
    setenv("HOME", dir, 1);
    c = ctx_at(NULL);
    snprintf(want, sizeof want, "%s/.cache/moefuse/placement.json", dir);
    cr_expect_str_eq(mf_ctx_cache_path(c), want);
    mf_ctx_destroy(c);

    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
    c = ctx_at(NULL);
    cr_expect_null(mf_ctx_cache_path(c));
    cr_expect_eq(mf_ctx_cache_status(c), MF_ERR_IO);
    mf_ctx_destroy(c);
    rm_tree(dir);
}
