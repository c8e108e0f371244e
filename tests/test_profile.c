/* Profiler: the grid, every grid variant's inputs through the public API, a
 * small real profile (points, spread, models, held-out error, a cache that
 * a context then loads and routes by), an interrupted profile keeps what it
 * measured, and the moefuse-profile tool end to end. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "placement_fixture.h"
#include "src/dispatch/costmodel.h"
#include "src/dispatch/profile.h"

static mf_ctx *cpu_ctx(const char *cache_path)
{
    mf_ctx_options o = mf_ctx_options_default();
    o.threads = 2;
    o.gpu = MF_GPU_DISABLED;
    o.cache_path = cache_path;
    mf_ctx *c = NULL;
    cr_assert_eq(mf_ctx_create(&o, &c), MF_OK);
    return c;
}

static char *tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/mft_prof_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    return dir;
}

static void rm_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

Test(dispatch, profile_grid)
{
    mf_prof_variant q[64], f[64];
    int nq = mf_prof_grid(0, q, 64), nf = mf_prof_grid(1, f, 64);
    cr_assert_gt(nq, 0);
    cr_assert_gt(nf, nq);
    int ops[MF_OP_COUNT_] = {0};
    for (int i = 0; i < nq; i++) {
        ops[q[i].op]++;
        cr_expect_gt(strlen(q[i].label), 0);
        cr_expect_eq(q[i].sizes[0], 1, "decode sizes start at 1");
        if (q[i].op != MF_OP_DEQUANT)
            cr_expect_eq(q[i].sizes[q[i].n_sizes - 1], 32, "%s", q[i].label);
        /* Every quick variant is in the full grid. */
        int found = 0;
        for (int j = 0; j < nf; j++)
            found |= mf_shape_cmp(&q[i].base, &f[j].base) == 0;
        cr_expect(found, "%s missing from --full", q[i].label);
        mf_op_shape s = mf_prof_shape(&q[i], 7);
        if (q[i].op == MF_OP_DEQUANT)
            cr_expect(s.E == 7 && s.T == 1);
        else
            cr_expect(s.T == 7 && s.E == q[i].base.E);
    }
    for (int op = 0; op < MF_OP_COUNT_; op++)
        cr_expect_gt(ops[op], 0, "--quick lacks %s", mf_op_name(op));
    for (int j = 0; j < nf; j++)
        if (f[j].op != MF_OP_DEQUANT)
            cr_expect_eq(f[j].sizes[f[j].n_sizes - 1], 128);
    cr_expect_eq(mf_prof_grid(0, q, 2), 2, "capacity is honoured");
}

Test(dispatch, profile_every_variant_runs)
{
    /* Each variant's inputs are valid for its op: one call of every
     * variant of the full grid, at its two smallest sizes, returns MF_OK. */
    mf_ctx *ctx = cpu_ctx("/nonexistent/dir/p.json");
    mf_prof_variant v[64];
    int n = mf_prof_grid(1, v, 64);
    for (int i = 0; i < n; i++) {
        mf_prof_inst *in = NULL;
        cr_assert_eq(mf_prof_inst_create(&v[i], 2, 0, &in), MF_OK, "%s %s",
                     mf_op_name(v[i].op), v[i].label);
        for (int64_t x = 1; x <= 2; x++)
            cr_expect_eq(mf_prof_inst_run(in, ctx, x, MF_IMPL_CPU, 1), MF_OK,
                         "%s %s x=%lld", mf_op_name(v[i].op), v[i].label,
                         (long long)x);
        cr_expect_eq(mf_prof_inst_run(in, ctx, 3, MF_IMPL_CPU, 0),
                     MF_ERR_INVALID_ARG, "beyond the sizes it was made for");
        cr_expect_eq(mf_prof_inst_run(in, ctx, 0, MF_IMPL_CPU, 0),
                     MF_ERR_INVALID_ARG);
        mf_prof_inst_free(in);
    }
    mf_ctx_destroy(ctx);
}

typedef struct prog {
    int calls, last_done, total, bad, stop_after;
    volatile sig_atomic_t *stop;
} prog;

static void on_progress(void *user, int done, int total, double elapsed,
                        double eta, const char *what)
{
    prog *g = user;
    (void)eta;
    g->bad |= done < g->last_done || done > total || elapsed < 0 || !what;
    g->last_done = done;
    g->total = total;
    g->calls++;
    if (g->stop_after && done >= g->stop_after)
        *g->stop = 1;
}

Test(dispatch, profile_small_run)
{
    char *dir = tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/placement.json", dir);
    mf_ctx *ctx = cpu_ctx(path);
    cr_expect_eq(mf_ctx_cache_status(ctx), MF_ERR_IO, "unprofiled");
    volatile sig_atomic_t stop = 0;
    prog g = {.stop = &stop};
    mf_prof_opts o = {.only_op = "glu", .budget_s = 4, .stop = &stop,
                      .progress = on_progress, .progress_user = &g};
    mf_placement *p = NULL;
    cr_assert_eq(mf_profile_run(ctx, &o, &p), MF_OK);
    cr_expect(p->complete);
    cr_expect(!g.bad);
    cr_expect_eq(g.last_done, g.total, "ends with done == total");
    cr_expect(pcf_valid(p));
    cr_expect_eq(p->fp.n_gpus, 0);
    cr_expect(!p->gpu.measured);

    /* Every glu variant of the quick grid at every size, on the CPU. */
    mf_prof_variant v[64];
    int nv = mf_prof_grid(0, v, 64), expected = 0, missing = 0, bad = 0;
    for (int i = 0; i < nv; i++) {
        if (v[i].op != MF_OP_GLU)
            continue;
        for (int j = 0; j < v[i].n_sizes; j++) {
            mf_op_shape s = mf_prof_shape(&v[i], v[i].sizes[j]);
            const mf_pc_point *pt = mf_placement_find(p, &s, MF_DEVICE_CPU);
            expected++;
            if (!pt) {
                missing++;
                continue;
            }
            bad += !(pt->median_us > 0 && pt->p10_us <= pt->median_us &&
                     pt->median_us <= pt->p90_us && pt->reps >= 3);
        }
    }
    cr_expect_eq(missing, 0, "sizes not measured");
    cr_expect_eq(bad, 0, "points without a median inside their spread");
    cr_expect_eq((int)p->n_pts, expected, "only glu, only the CPU");
    cr_expect_eq((int)p->n_dec, expected);
    /* A variant model and the pooled one, with held-out errors. */
    mf_op_shape s5 = mf_prof_shape(&v[0], 5);
    for (int i = 0; i < nv; i++)
        if (v[i].op == MF_OP_GLU)
            s5 = mf_prof_shape(&v[i], 5);
    const mf_pc_model *m = mf_model_find(p, &s5, MF_DEVICE_CPU);
    cr_assert_not_null(m);
    cr_expect_geq(m->n_points, 4);
    cr_expect_geq(m->heldout_med_err, 0);
    int pooled = 0;
    for (size_t i = 0; i < p->n_models; i++)
        pooled += p->models[i].mode < 0;
    cr_expect_eq(pooled, 1);

    /* The cache it makes is this context's: a new one loads it and its
     * predictions come from it (measured T exact, T = 5 from the model). */
    cr_assert_eq(mf_placement_save(p, path), MF_OK);
    mf_ctx *c2 = cpu_ctx(path);
    cr_expect_eq(mf_ctx_cache_status(c2), MF_OK);
    mf_route_shape rs = {.op = MF_ROUTE_GLU, .T = 4, .N = s5.N,
                         .wtype = s5.wtype, .mode = s5.mode};
    mf_route_decision d;
    cr_assert_eq(mf_route_explain(c2, &rs, &d), MF_OK);
    mf_op_shape s4 = s5;
    s4.T = 4;
    cr_expect_eq(d.cpu_us, mf_placement_find(p, &s4, 0)->median_us);
    cr_expect_eq(d.device, MF_DEVICE_CPU);
    rs.T = 5;
    cr_assert_eq(mf_route_explain(c2, &rs, &d), MF_OK);
    cr_expect_gt(d.cpu_us, 0);
    mf_ctx_destroy(c2);
    mf_placement_free(p);
    mf_ctx_destroy(ctx);
    rm_dir(dir);
}

Test(dispatch, profile_stop_keeps_measurements)
{
    mf_ctx *ctx = cpu_ctx("/nonexistent/p.json");
    volatile sig_atomic_t stop = 0;
    prog g = {.stop = &stop, .stop_after = 3};
    mf_prof_opts o = {.only_op = "combine", .budget_s = 5, .stop = &stop,
                      .progress = on_progress, .progress_user = &g};
    mf_placement *p = NULL;
    cr_assert_eq(mf_profile_run(ctx, &o, &p), MF_OK);
    cr_expect(!p->complete);
    cr_expect(p->n_pts >= 2 && p->n_pts <= 4, "%zu points", p->n_pts);
    cr_expect(pcf_valid(p));
    char *text = mf_placement_to_json(p, NULL);
    cr_assert_not_null(text);
    cr_expect_neq(strstr(text, "\"complete\": false"), NULL);
    mf_placement *q = NULL;
    cr_expect_eq(mf_placement_parse(text, strlen(text), &p->fp, &q), MF_OK);
    mf_placement_free(q);
    free(text);
    mf_placement_free(p);

    cr_expect_eq(mf_profile_run(NULL, &o, &p), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_profile_run(ctx, NULL, &p), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_profile_run(ctx, &o, NULL), MF_ERR_INVALID_ARG);
    mf_ctx_destroy(ctx);
}

/* ------------------------------------------------------------- the tool -- */

static int run_tool(const char *args)
{
    const char *tool = getenv("MOEFUSE_PROFILE");
    cr_assert_not_null(tool, "MOEFUSE_PROFILE is not set");
    char a[1100], cmd[2048];
    snprintf(a, sizeof a, "%s >/dev/null 2>&1", args);
    mft_exe_command(cmd, sizeof cmd, tool, a);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = malloc(1 << 22);
    cr_assert_not_null(b);
    *len = fread(b, 1, (1 << 22) - 1, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

Test(dispatch, profile_tool)
{
    cr_expect_eq(run_tool("--help"), 0);
    cr_expect_eq(run_tool("--frobnicate"), 2);
    cr_expect_eq(run_tool("--op nosuchop"), 2);
    cr_expect_eq(run_tool("--budget -3"), 2);
    cr_expect_eq(run_tool("--threads 0"), 2);
    cr_expect_eq(run_tool("--gpu sometimes"), 2);
    cr_expect_eq(run_tool("--json"), 2);

    char *dir = tmpdir();
    char args[1024];
    snprintf(args, sizeof args,
             "--quick --op combine --budget 3 --threads 2 --gpu off "
             "--cache %s/c/placement.json --json %s/r.json --svg-dir %s",
             dir, dir, dir);
    cr_assert_eq(run_tool(args), 0);
    char path[512];
    size_t len;
    /* The results file is JSON with the op's variants. */
    snprintf(path, sizeof path, "%s/r.json", dir);
    char *res = slurp(path, &len);
    cr_assert_not_null(res);
    mf_json_doc *doc = NULL;
    cr_assert_eq(mf_json_parse(res, len, &doc, NULL), 0);
    const mf_json *vars = mf_json_get(mf_json_root(doc), "variants");
    cr_assert(vars && vars->type == MF_JSON_ARRAY && vars->len >= 1);
    const char *op;
    cr_expect(mf_json_strv(mf_json_get(&vars->items[0], "op"), &op) &&
              !strcmp(op, "combine"));
    mf_json_free(doc);
    free(res);
    /* The plot. */
    snprintf(path, sizeof path, "%s/profile_combine.svg", dir);
    char *svg = slurp(path, &len);
    cr_assert_not_null(svg);
    cr_expect_eq(strncmp(svg, "<svg", 4), 0);
    cr_expect_neq(strstr(svg, "</svg>"), NULL);
    free(svg);
    /* The cache, which a context with the same settings loads. */
    snprintf(path, sizeof path, "%s/c/placement.json", dir);
    mf_ctx *c = cpu_ctx(path);
    cr_expect_eq(mf_ctx_cache_status(c), MF_OK);
    mf_ctx_destroy(c);

    /* --no-cache leaves no cache. */
    snprintf(args, sizeof args,
             "--op gating --budget 1 --gpu off --no-cache --no-svg "
             "--json %s/r2.json --cache %s/none/p.json", dir, dir);
    cr_expect_eq(run_tool(args), 0);
    struct stat sb;
    snprintf(path, sizeof path, "%s/none/p.json", dir);
    cr_expect_neq(stat(path, &sb), 0);

    /* --op without --cache leaves the context's cache alone */
    snprintf(args, sizeof args,
             "--op gating --budget 1 --gpu off --no-svg --json %s/r3.json", dir);
    char envd[600];
    snprintf(envd, sizeof envd, "%s/xdg", dir);
    const char *old_xdg = getenv("XDG_CACHE_HOME");
    char *saved = old_xdg ? strdup(old_xdg) : NULL;
    setenv("XDG_CACHE_HOME", envd, 1);
    cr_expect_eq(run_tool(args), 0);
    if (saved) {
        setenv("XDG_CACHE_HOME", saved, 1);
        free(saved);
    } else {
        unsetenv("XDG_CACHE_HOME");
    }
    snprintf(path, sizeof path, "%s/xdg/moefuse/placement.json", dir);
    cr_expect_neq(stat(path, &sb), 0, "--op wrote the default cache");
    rm_dir(dir);
}
