/* The placement cache's JSON form (docs/placement-cache.md): writing, and
 * reading with full validation. Nothing in a file is trusted: every field is
 * type- and range-checked, the checksum must match, and the stored decisions
 * must agree with the stored measurements. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

#define MAX_US 1e9    /* 1000 s: no single op call takes longer */
#define MAX_COEF 1e9

static const char *const dev_names[MF_DEVICE_COUNT_] = {"cpu", "gpu"};

/* -------------------------------------------------------------- writing -- */

void mf_pc_put_shape(mf_jw *w, const mf_op_shape *s)
{
    mf_jw_key(w, "op");
    mf_jw_str(w, mf_op_name(s->op));
    mf_jw_key(w, "mode");
    mf_jw_int(w, s->mode);
    mf_jw_key(w, "wtype");
    mf_jw_str(w, mf_type_name(s->wtype));
    mf_jw_key(w, "T");
    mf_jw_int(w, s->T);
    mf_jw_key(w, "E");
    mf_jw_int(w, s->E);
    mf_jw_key(w, "k");
    mf_jw_int(w, s->k);
    mf_jw_key(w, "N");
    mf_jw_int(w, s->N);
    mf_jw_key(w, "K");
    mf_jw_int(w, s->K);
}

static void put_fingerprint(mf_jw *w, const mf_fingerprint *fp)
{
    char hex[24];
    snprintf(hex, sizeof hex, "%016llx",
             (unsigned long long)mf_fingerprint_hash(fp));
    mf_jw_object(w);
    mf_jw_key(w, "hash");
    mf_jw_str(w, hex);
    mf_jw_key(w, "cpu_model");
    mf_jw_str(w, fp->cpu_model);
    mf_jw_key(w, "arch");
    mf_jw_str(w, fp->arch);
    mf_jw_key(w, "features");
    mf_jw_str(w, fp->features);
    mf_jw_key(w, "physical_cores");
    mf_jw_int(w, fp->physical_cores);
    mf_jw_key(w, "logical_cpus");
    mf_jw_int(w, fp->logical_cpus);
    mf_jw_key(w, "isa");
    mf_jw_str(w, fp->isa);
    mf_jw_key(w, "threads");
    mf_jw_int(w, fp->threads);
    mf_jw_key(w, "gpus");
    mf_jw_array(w);
    for (int i = 0; i < fp->n_gpus && i < MF_FP_MAX_GPUS; i++) {
        const mf_fp_gpu *g = &fp->gpu[i];
        mf_jw_object(w);
        mf_jw_key(w, "vendor_id");
        mf_jw_int(w, g->vendor_id);
        mf_jw_key(w, "device_id");
        mf_jw_int(w, g->device_id);
        mf_jw_key(w, "driver_version");
        mf_jw_int(w, g->driver_version);
        mf_jw_key(w, "uuid");
        mf_jw_str(w, g->uuid);
        mf_jw_key(w, "name");
        mf_jw_str(w, g->name);
        mf_jw_end(w);
    }
    mf_jw_end(w);
    mf_jw_key(w, "library");
    mf_jw_str(w, fp->library);
    mf_jw_end(w);
}

static void put_curve(mf_jw *w, const mf_pc_curve *c)
{
    mf_jw_object(w);
    mf_jw_key(w, "a_us");
    mf_jw_num(w, c->a_us);
    mf_jw_key(w, "us_per_byte");
    mf_jw_num(w, c->b_us_per_byte);
    mf_jw_key(w, "points");
    mf_jw_array(w);
    for (int i = 0; i < c->n && i < MF_PC_MAX_CURVE; i++) {
        mf_jw_array(w);
        mf_jw_num(w, c->bytes[i]);
        mf_jw_num(w, c->us[i]);
        mf_jw_end(w);
    }
    mf_jw_end(w);
    mf_jw_end(w);
}

char *mf_placement_to_json(const mf_placement *p, size_t *len)
{
    mf_jw w;
    mf_jw_init(&w, 2);
    mf_jw_object(&w);
    mf_jw_key(&w, "format");
    mf_jw_str(&w, MF_PC_FORMAT);
    mf_jw_key(&w, "version");
    mf_jw_int(&w, MF_PC_VERSION);
    mf_jw_key(&w, "fingerprint");
    put_fingerprint(&w, &p->fp);

    mf_jw_key(&w, "profile");
    mf_jw_object(&w);
    mf_jw_key(&w, "created");
    mf_jw_str(&w, p->created);
    mf_jw_key(&w, "mode");
    mf_jw_str(&w, p->profile_mode);
    mf_jw_key(&w, "seconds");
    mf_jw_num(&w, p->profile_seconds);
    mf_jw_key(&w, "complete");
    mf_jw_bool(&w, p->complete);
    mf_jw_end(&w);

    mf_jw_key(&w, "gpu");
    mf_jw_object(&w);
    mf_jw_key(&w, "measured");
    mf_jw_bool(&w, p->gpu.measured);
    if (p->gpu.measured) {
        mf_jw_key(&w, "roundtrip_us");
        mf_jw_num(&w, p->gpu.roundtrip_us);
        mf_jw_key(&w, "h2d");
        put_curve(&w, &p->gpu.h2d);
        mf_jw_key(&w, "d2h");
        put_curve(&w, &p->gpu.d2h);
    }
    mf_jw_end(&w);

    mf_jw_key(&w, "measurements");
    mf_jw_array(&w);
    for (size_t i = 0; i < p->n_pts; i++) {
        const mf_pc_point *pt = &p->pts[i];
        mf_jw_object(&w);
        mf_pc_put_shape(&w, &pt->s);
        mf_jw_key(&w, "dev");
        mf_jw_str(&w, dev_names[pt->dev]);
        mf_jw_key(&w, "median_us");
        mf_jw_num(&w, pt->median_us);
        mf_jw_key(&w, "p10_us");
        mf_jw_num(&w, pt->p10_us);
        mf_jw_key(&w, "p90_us");
        mf_jw_num(&w, pt->p90_us);
        mf_jw_key(&w, "reps");
        mf_jw_int(&w, pt->reps);
        mf_jw_end(&w);
    }
    mf_jw_end(&w);

    mf_jw_key(&w, "models");
    mf_jw_array(&w);
    for (size_t i = 0; i < p->n_models; i++) {
        const mf_pc_model *m = &p->models[i];
        mf_jw_object(&w);
        mf_jw_key(&w, "op");
        mf_jw_str(&w, mf_op_name(m->op));
        mf_jw_key(&w, "mode");
        mf_jw_int(&w, m->mode);
        mf_jw_key(&w, "wtype");
        mf_jw_str(&w, m->wtype < 0 ? "any" : mf_type_name(m->wtype));
        mf_jw_key(&w, "dev");
        mf_jw_str(&w, dev_names[m->dev]);
        mf_jw_key(&w, "a_us");
        mf_jw_num(&w, m->a_us);
        mf_jw_key(&w, "us_per_byte");
        mf_jw_num(&w, m->b_us_per_byte);
        mf_jw_key(&w, "us_per_flop");
        mf_jw_num(&w, m->c_us_per_flop);
        mf_jw_key(&w, "points");
        mf_jw_int(&w, m->n_points);
        mf_jw_key(&w, "heldout_median_err");
        mf_jw_num(&w, m->heldout_med_err);
        mf_jw_key(&w, "heldout_max_err");
        mf_jw_num(&w, m->heldout_max_err);
        mf_jw_end(&w);
    }
    mf_jw_end(&w);

    mf_jw_key(&w, "decisions");
    mf_jw_array(&w);
    for (size_t i = 0; i < p->n_dec; i++) {
        const mf_pc_decision *d = &p->dec[i];
        mf_jw_object(&w);
        mf_pc_put_shape(&w, &d->s);
        mf_jw_key(&w, "dev");
        mf_jw_str(&w, dev_names[d->dev]);
        mf_jw_key(&w, "cpu_us");
        mf_jw_num(&w, d->cpu_us);
        mf_jw_key(&w, "gpu_us");
        if (d->gpu_us < 0)
            mf_jw_null(&w);
        else
            mf_jw_num(&w, d->gpu_us);
        mf_jw_end(&w);
    }
    mf_jw_end(&w);

    mf_jw_key(&w, "forms");
    mf_jw_array(&w);
    for (size_t i = 0; i < p->n_forms; i++) {
        const mf_pc_form *f = &p->forms[i];
        mf_jw_object(&w);
        mf_pc_put_shape(&w, &f->s);
        mf_jw_key(&w, "form");
        mf_jw_str(&w, mf_gpu_form_name(f->form));
        mf_jw_key(&w, "us");
        mf_jw_array(&w);
        mf_jw_num(&w, f->us[0]);
        mf_jw_num(&w, f->us[1]);
        mf_jw_end(&w);
        mf_jw_key(&w, "value");
        mf_jw_int(&w, f->value);
        mf_jw_end(&w);
    }
    mf_jw_end(&w);

    /* The checksum covers every byte before its key's opening quote. */
    mf_jw_key(&w, "checksum");
    if (w.failed) {
        mf_jw_free(&w);
        return NULL;
    }
    size_t q = w.len - strlen("\"checksum\": ");
    char hex[24];
    snprintf(hex, sizeof hex, "%016llx",
             (unsigned long long)mf_fnv64(MF_FNV64_INIT, w.buf, q));
    mf_jw_str(&w, hex);
    mf_jw_end(&w);
    mf_jw_raw(&w, "\n", 1);
    if (w.failed) {
        mf_jw_free(&w);
        return NULL;
    }
    if (len)
        *len = w.len;
    return w.buf;
}

/* -------------------------------------------------------------- reading -- */

typedef struct rd {
    int bad;
} rd;

static int64_t get_int(rd *r, const mf_json *o, const char *key, int64_t lo,
                       int64_t hi)
{
    int64_t v = 0;
    if (!mf_json_int(mf_json_get(o, key), lo, hi, &v))
        r->bad = 1;
    return v;
}

static double get_num(rd *r, const mf_json *o, const char *key, double lo,
                      double hi)
{
    double v = 0;
    if (!mf_json_num(mf_json_get(o, key), &v) || !(v >= lo && v <= hi)) {
        r->bad = 1;
        return 0;
    }
    return v;
}

static int get_bool(rd *r, const mf_json *o, const char *key)
{
    const mf_json *v = mf_json_get(o, key);
    if (!v || (v->type != MF_JSON_TRUE && v->type != MF_JSON_FALSE)) {
        r->bad = 1;
        return 0;
    }
    return v->type == MF_JSON_TRUE;
}

static void get_str(rd *r, const mf_json *o, const char *key, char *dst,
                    size_t cap)
{
    const char *s;
    if (!mf_json_strv(mf_json_get(o, key), &s) || strlen(s) >= cap) {
        r->bad = 1;
        return;
    }
    memcpy(dst, s, strlen(s) + 1);
}

static int get_name(rd *r, const mf_json *o, const char *key,
                    const char *const *names, int n)
{
    const char *s;
    if (mf_json_strv(mf_json_get(o, key), &s))
        for (int i = 0; i < n; i++)
            if (names[i] && strcmp(s, names[i]) == 0)
                return i;
    r->bad = 1;
    return 0;
}

static const mf_json *get_array(rd *r, const mf_json *o, const char *key,
                                size_t max)
{
    const mf_json *a = mf_json_get(o, key);
    if (!a || a->type != MF_JSON_ARRAY || a->len > max) {
        r->bad = 1;
        return NULL;
    }
    return a;
}

static const mf_json *get_object(rd *r, const mf_json *o, const char *key)
{
    const mf_json *v = mf_json_get(o, key);
    if (!v || v->type != MF_JSON_OBJECT) {
        r->bad = 1;
        return NULL;
    }
    return v;
}

static int get_op(rd *r, const mf_json *o)
{
    const char *s;
    int op = -1;
    if (mf_json_strv(mf_json_get(o, "op"), &s))
        op = mf_op_parse(s);
    if (op < 0) {
        r->bad = 1;
        return 0;
    }
    return op;
}

static int get_wtype(rd *r, const mf_json *o, int allow_any)
{
    const char *s;
    if (mf_json_strv(mf_json_get(o, "wtype"), &s)) {
        if (allow_any && strcmp(s, "any") == 0)
            return -1;
        for (int t = 0; t < MF_TYPE_COUNT_; t++)
            if (strcmp(s, mf_type_name((mf_type)t)) == 0)
                return t;
    }
    r->bad = 1;
    return 0;
}

static mf_op_shape get_shape(rd *r, const mf_json *o)
{
    mf_op_shape s = {0};
    s.op = (mf_op_id)get_op(r, o);
    s.mode = (int)get_int(r, o, "mode", 0, 65535);
    s.wtype = (mf_type)get_wtype(r, o, 0);
    s.T = get_int(r, o, "T", 1, MF_MAX_T);
    s.E = get_int(r, o, "E", 0, MF_MAX_E);
    s.k = get_int(r, o, "k", 0, MF_MAX_E);
    s.N = get_int(r, o, "N", 0, MF_MAX_DIM);
    s.K = get_int(r, o, "K", 0, MF_MAX_DIM);
    mf_op_shape b = mf_shape_bucket(&s);
    if (b.T != s.T)
        r->bad = 1; /* only bucket representatives are stored */
    return s;
}

static int is_hex32(const char *s)
{
    size_t n = strlen(s);
    if (n != 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static void get_fingerprint(rd *r, const mf_json *o, mf_fingerprint *fp)
{
    memset(fp, 0, sizeof *fp);
    if (!o)
        return;
    get_str(r, o, "cpu_model", fp->cpu_model, sizeof fp->cpu_model);
    get_str(r, o, "arch", fp->arch, sizeof fp->arch);
    get_str(r, o, "features", fp->features, sizeof fp->features);
    fp->physical_cores = (int32_t)get_int(r, o, "physical_cores", 1, 1 << 20);
    fp->logical_cpus = (int32_t)get_int(r, o, "logical_cpus", 1, 1 << 20);
    get_str(r, o, "isa", fp->isa, sizeof fp->isa);
    fp->threads = (int32_t)get_int(r, o, "threads", 1, 1024);
    get_str(r, o, "library", fp->library, sizeof fp->library);
    const mf_json *g = get_array(r, o, "gpus", MF_FP_MAX_GPUS);
    if (!g)
        return;
    fp->n_gpus = (int32_t)g->len;
    for (size_t i = 0; i < g->len; i++) {
        const mf_json *e = &g->items[i];
        mf_fp_gpu *d = &fp->gpu[i];
        d->vendor_id = (uint32_t)get_int(r, e, "vendor_id", 0, UINT32_MAX);
        d->device_id = (uint32_t)get_int(r, e, "device_id", 0, UINT32_MAX);
        d->driver_version =
            (uint32_t)get_int(r, e, "driver_version", 0, UINT32_MAX);
        get_str(r, e, "uuid", d->uuid, sizeof d->uuid);
        get_str(r, e, "name", d->name, sizeof d->name);
        if (!r->bad && !is_hex32(d->uuid))
            r->bad = 1;
    }
    /* The stored hash must be that of the fields (catches hand edits). */
    char hex[24], want[24];
    get_str(r, o, "hash", hex, sizeof hex);
    snprintf(want, sizeof want, "%016llx",
             (unsigned long long)mf_fingerprint_hash(fp));
    if (!r->bad && strcmp(hex, want) != 0)
        r->bad = 1;
}

static void get_curve(rd *r, const mf_json *o, mf_pc_curve *c)
{
    memset(c, 0, sizeof *c);
    if (!o)
        return;
    c->a_us = get_num(r, o, "a_us", 0, MAX_US);
    c->b_us_per_byte = get_num(r, o, "us_per_byte", 0, MAX_COEF);
    const mf_json *a = get_array(r, o, "points", MF_PC_MAX_CURVE);
    if (!a)
        return;
    c->n = (int32_t)a->len;
    for (size_t i = 0; i < a->len; i++) {
        const mf_json *e = &a->items[i];
        if (e->type != MF_JSON_ARRAY || e->len != 2 ||
            !mf_json_num(&e->items[0], &c->bytes[i]) ||
            !mf_json_num(&e->items[1], &c->us[i]) || !(c->bytes[i] >= 0) ||
            !(c->bytes[i] <= 1e15) || !(c->us[i] >= 0) || !(c->us[i] <= MAX_US))
            r->bad = 1;
    }
}

static mf_status read_points(rd *r, const mf_json *root, mf_placement *p)
{
    const mf_json *a = get_array(r, root, "measurements", MF_PC_MAX_POINTS);
    if (!a)
        return MF_OK;
    for (size_t i = 0; i < a->len && !r->bad; i++) {
        const mf_json *e = &a->items[i];
        mf_pc_point pt = {0};
        pt.s = get_shape(r, e);
        pt.dev = get_name(r, e, "dev", dev_names, MF_DEVICE_COUNT_);
        pt.median_us = get_num(r, e, "median_us", 0, MAX_US);
        pt.p10_us = get_num(r, e, "p10_us", 0, MAX_US);
        pt.p90_us = get_num(r, e, "p90_us", 0, MAX_US);
        pt.reps = (int32_t)get_int(r, e, "reps", 1, INT32_MAX);
        if (!(pt.p10_us <= pt.median_us && pt.median_us <= pt.p90_us))
            r->bad = 1;
        if (pt.dev == MF_DEVICE_GPU && p->fp.n_gpus == 0)
            r->bad = 1;
        if (r->bad)
            break;
        if (mf_placement_add_point(p, &pt) != MF_OK)
            return MF_ERR_OUT_OF_MEMORY;
    }
    if (r->bad)
        return MF_OK;
    size_t n = p->n_pts;
    if (mf_placement_finish(p) != MF_OK)
        return MF_ERR_OUT_OF_MEMORY;
    if (p->n_pts != n)
        r->bad = 1; /* duplicates */
    return MF_OK;
}

static mf_status read_models(rd *r, const mf_json *root, mf_placement *p)
{
    const mf_json *a = get_array(r, root, "models", MF_PC_MAX_MODELS);
    if (!a || r->bad)
        return MF_OK;
    if (a->len) {
        p->models = calloc(a->len, sizeof *p->models);
        if (!p->models)
            return MF_ERR_OUT_OF_MEMORY;
    }
    for (size_t i = 0; i < a->len && !r->bad; i++) {
        const mf_json *e = &a->items[i];
        mf_pc_model m = {0};
        m.op = get_op(r, e);
        m.mode = (int32_t)get_int(r, e, "mode", -1, 65535);
        m.wtype = get_wtype(r, e, 1);
        m.dev = get_name(r, e, "dev", dev_names, MF_DEVICE_COUNT_);
        m.a_us = get_num(r, e, "a_us", 0, MAX_US);
        m.b_us_per_byte = get_num(r, e, "us_per_byte", 0, MAX_COEF);
        m.c_us_per_flop = get_num(r, e, "us_per_flop", 0, MAX_COEF);
        m.n_points = (int32_t)get_int(r, e, "points", 0, INT32_MAX);
        m.heldout_med_err = get_num(r, e, "heldout_median_err", -1, 1e6);
        m.heldout_max_err = get_num(r, e, "heldout_max_err", -1, 1e6);
        if ((m.mode < 0) != (m.wtype < 0))
            r->bad = 1;
        if (m.dev == MF_DEVICE_GPU && p->fp.n_gpus == 0)
            r->bad = 1;
        for (size_t j = 0; j < p->n_models && !r->bad; j++) {
            const mf_pc_model *o = &p->models[j];
            if (o->op == m.op && o->mode == m.mode && o->wtype == m.wtype &&
                o->dev == m.dev)
                r->bad = 1;
        }
        p->models[p->n_models++] = m;
    }
    return MF_OK;
}

/* The stored decisions must be exactly those the measurements give. */
static void check_decisions(rd *r, const mf_json *root, const mf_placement *p)
{
    const mf_json *a = get_array(r, root, "decisions", MF_PC_MAX_POINTS);
    if (!a || r->bad)
        return;
    if (a->len != p->n_dec) {
        r->bad = 1;
        return;
    }
    for (size_t i = 0; i < a->len && !r->bad; i++) {
        const mf_json *e = &a->items[i];
        mf_op_shape s = get_shape(r, e);
        int dev = get_name(r, e, "dev", dev_names, MF_DEVICE_COUNT_);
        double cpu = get_num(r, e, "cpu_us", 0, MAX_US);
        const mf_json *g = mf_json_get(e, "gpu_us");
        double gpu = -1;
        if (!g || (g->type != MF_JSON_NULL &&
                   !(mf_json_num(g, &gpu) && gpu >= 0 && gpu <= MAX_US)))
            r->bad = 1;
        const mf_pc_decision *d = &p->dec[i];
        if (r->bad || mf_shape_cmp(&s, &d->s) != 0 || dev != d->dev ||
            cpu != d->cpu_us || gpu != d->gpu_us)
            r->bad = 1;
    }
}

/* The kernel forms (optional: a file from before them has none). Each
 * value must be the one its two times give. */
static mf_status read_forms(rd *r, const mf_json *root, mf_placement *p)
{
    if (!mf_json_get(root, "forms"))
        return MF_OK;
    const mf_json *a = get_array(r, root, "forms", MF_PC_MAX_POINTS);
    if (!a || r->bad)
        return MF_OK;
    if (a->len && p->fp.n_gpus == 0) {
        r->bad = 1;
        return MF_OK;
    }
    for (size_t i = 0; i < a->len && !r->bad; i++) {
        const mf_json *e = &a->items[i];
        mf_pc_form f = {0};
        f.s = get_shape(r, e);
        const char *name;
        f.form = mf_json_strv(mf_json_get(e, "form"), &name)
                     ? mf_gpu_form_parse(name)
                     : -1;
        const mf_json *us = mf_json_get(e, "us");
        if (f.form < 0 || !us || us->type != MF_JSON_ARRAY || us->len != 2 ||
            !mf_json_num(&us->items[0], &f.us[0]) ||
            !mf_json_num(&us->items[1], &f.us[1]) ||
            !(f.us[0] > 0 && f.us[0] <= MAX_US) ||
            !(f.us[1] > 0 && f.us[1] <= MAX_US)) {
            r->bad = 1;
            break;
        }
        int64_t v = get_int(r, e, "value", -1, 1);
        if (r->bad || v != mf_pc_form_pick(f.us))
            r->bad = 1;
        if (r->bad)
            break;
        mf_status st = mf_placement_add_form(p, &f);
        if (st == MF_ERR_OUT_OF_MEMORY)
            return st;
        if (st != MF_OK)
            r->bad = 1; /* a form of another op */
    }
    if (r->bad)
        return MF_OK;
    size_t n = p->n_forms;
    mf_placement_forms_finish(p);
    if (p->n_forms != n)
        r->bad = 1; /* duplicates */
    return MF_OK;
}

static int checksum_ok(const char *text, const mf_json *root)
{
    if (root->type != MF_JSON_OBJECT || root->len == 0)
        return 0;
    size_t last = root->len - 1;
    const char *hex;
    if (strcmp(root->keys[last], "checksum") != 0 ||
        !mf_json_strv(&root->items[last], &hex))
        return 0;
    char want[24];
    snprintf(want, sizeof want, "%016llx",
             (unsigned long long)mf_fnv64(MF_FNV64_INIT, text,
                                          root->key_offsets[last]));
    return strcmp(hex, want) == 0;
}

mf_status mf_placement_parse(const char *text, size_t len,
                             const mf_fingerprint *expect,
                             mf_placement **out)
{
    if (!text || !out)
        return MF_ERR_INVALID_ARG;
    mf_json_doc *doc = NULL;
    int prc = mf_json_parse(text, len, &doc, NULL);
    if (prc == -2)
        return MF_ERR_OUT_OF_MEMORY;
    if (prc != 0)
        return MF_ERR_CACHE_FORMAT;
    const mf_json *root = mf_json_root(doc);
    rd r = {0};
    char fmt[32] = "";
    mf_status st = MF_OK;
    mf_placement *p = NULL;

    get_str(&r, root, "format", fmt, sizeof fmt);
    int64_t ver = get_int(&r, root, "version", 0, INT32_MAX);
    if (r.bad || strcmp(fmt, MF_PC_FORMAT) != 0 || ver != MF_PC_VERSION ||
        !checksum_ok(text, root)) {
        st = MF_ERR_CACHE_FORMAT;
        goto done;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        st = MF_ERR_OUT_OF_MEMORY;
        goto done;
    }
    get_fingerprint(&r, get_object(&r, root, "fingerprint"), &p->fp);
    if (r.bad) {
        st = MF_ERR_CACHE_FORMAT;
        goto done;
    }
    if (expect && !mf_fingerprint_equal(expect, &p->fp)) {
        st = MF_ERR_CACHE_MISMATCH;
        goto done;
    }
    const mf_json *prof = get_object(&r, root, "profile");
    if (prof) {
        get_str(&r, prof, "created", p->created, sizeof p->created);
        get_str(&r, prof, "mode", p->profile_mode, sizeof p->profile_mode);
        p->profile_seconds = get_num(&r, prof, "seconds", 0, 1e7);
        p->complete = get_bool(&r, prof, "complete");
    }
    const mf_json *gpu = get_object(&r, root, "gpu");
    if (gpu) {
        p->gpu.measured = get_bool(&r, gpu, "measured");
        if (p->gpu.measured) {
            if (p->fp.n_gpus == 0)
                r.bad = 1;
            p->gpu.roundtrip_us = get_num(&r, gpu, "roundtrip_us", 0, MAX_US);
            get_curve(&r, get_object(&r, gpu, "h2d"), &p->gpu.h2d);
            get_curve(&r, get_object(&r, gpu, "d2h"), &p->gpu.d2h);
        }
    }
    if (!r.bad && (st = read_points(&r, root, p)) != MF_OK)
        goto done;
    if (!r.bad && (st = read_models(&r, root, p)) != MF_OK)
        goto done;
    check_decisions(&r, root, p);
    if (!r.bad && (st = read_forms(&r, root, p)) != MF_OK)
        goto done;
    if (r.bad)
        st = MF_ERR_CACHE_FORMAT;
done:
    mf_json_free(doc);
    if (st != MF_OK) {
        mf_placement_free(p);
        return st;
    }
    *out = p;
    return MF_OK;
}
