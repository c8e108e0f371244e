/* Router: chain placement against brute force and on tables with a known
 * optimum; single-op decisions and chain plans on a mocked profile (a
 * synthetic machine whose costs follow known formulas); the built-in rule;
 * argument errors of the public queries. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "placement_fixture.h"
#include "src/dispatch/chain.h"
#include "src/dispatch/costmodel.h"
#include "src/dispatch/profile.h"

/* ------------------------------------------------------ chain placement -- */

/* The chain cost written out independently of chain.c: walk the ops,
 * pay a copy whenever the data changes sides (the chain starts and ends
 * on the host) and a launch whenever a GPU run starts. */
static double brute_cost(const mf_chain_costs *c, unsigned mask)
{
    double t = 0;
    int prev = 0;
    for (int i = 0; i <= c->n; i++) {
        int d = i < c->n ? (int)((mask >> i) & 1) : 0;
        if (prev == 0 && d == 1)
            t += c->h2d_us[i] + c->launch_us;
        if (prev == 1 && d == 0)
            t += c->d2h_us[i];
        if (i < c->n) {
            if (d == 1 && c->gpu_us[i] < 0)
                return INFINITY;
            t += d ? c->gpu_us[i] : c->cpu_us[i];
        }
        prev = d;
    }
    return t;
}

static double brute_min(const mf_chain_costs *c)
{
    double best = INFINITY;
    for (unsigned m = 0; m < (1u << c->n); m++)
        best = fmin(best, brute_cost(c, m));
    return best;
}

/* Chains here have at most 8 ops (the bound also keeps gcc's
 * -Warray-bounds quiet under the sanitizer build). */
static unsigned mask_of(const int *dev, int n)
{
    unsigned m = 0;
    for (int i = 0; i < n && i < 8; i++)
        m |= (unsigned)dev[i] << i;
    return m;
}

Test(dispatch, chain_matches_brute_force)
{
    mft_rng r = mft_rng_make(__LINE__);
    double cpu[8], gpu[8], h2d[9], d2h[9];
    for (int it = 0; it < 4000; it++) {
        int n = (int)mft_int(&r, 1, 8);
        /* Costs spanning cheap to dear on both sides; some ops cannot run
         * on the GPU; integer-valued half the time to provoke ties. */
        int ints = it & 1;
        for (int i = 0; i < n; i++) {
            cpu[i] = ints ? (double)mft_int(&r, 0, 6) : mft_uniform(&r, 0, 100);
            gpu[i] = ints ? (double)mft_int(&r, 0, 6) : mft_uniform(&r, 0, 100);
            if (mft_int(&r, 0, 9) == 0)
                gpu[i] = -1;
        }
        for (int b = 0; b <= n; b++) {
            h2d[b] = ints ? (double)mft_int(&r, 0, 4) : mft_uniform(&r, 0, 50);
            d2h[b] = ints ? (double)mft_int(&r, 0, 4) : mft_uniform(&r, 0, 50);
        }
        mf_chain_costs c = {.n = n, .cpu_us = cpu, .gpu_us = gpu,
                            .h2d_us = h2d, .d2h_us = d2h,
                            .launch_us = ints ? (double)mft_int(&r, 0, 5)
                                              : mft_uniform(&r, 0, 60)};
        int dev[8];
        double t = mf_chain_place(&c, dev);
        double want = brute_min(&c);
        /* Sums of the same few doubles in another order: 1e-9 relative. */
        cr_assert(fabs(t - want) <= 1e-9 * fmax(1, want),
                  "n=%d: dp %.12g, brute force %.12g", n, t, want);
        double got = brute_cost(&c, mask_of(dev, n));
        cr_assert(fabs(got - want) <= 1e-9 * fmax(1, want),
                  "the returned placement costs %.12g, optimum %.12g", got,
                  want);
        cr_assert(fabs(mf_chain_cost(&c, dev) - got) <= 1e-9 * fmax(1, got));
        for (int i = 0; i < n; i++)
            cr_assert(dev[i] == 0 || gpu[i] >= 0, "op %d placed on a GPU it "
                                                  "cannot run on", i);
    }
}

static void place(int n, const double *cpu, const double *gpu,
                  const double *h2d, const double *d2h, double launch,
                  int *dev, double *total)
{
    mf_chain_costs c = {.n = n, .cpu_us = cpu, .gpu_us = gpu, .h2d_us = h2d,
                        .d2h_us = d2h, .launch_us = launch};
    *total = mf_chain_place(&c, dev);
}

Test(dispatch, chain_known_optima)
{
    int dev[4];
    double t;
    const double z[5] = {0, 0, 0, 0, 0};

    /* 1. The GPU is faster for every op, but the copies at the ends and one
     *    launch cost more than it saves: all on the CPU. */
    {
        double cpu[3] = {10, 10, 10}, gpu[3] = {5, 5, 5};
        double h2d[4] = {20, 1, 1, 1}, d2h[4] = {1, 1, 1, 20};
        place(3, cpu, gpu, h2d, d2h, 10, dev, &t);
        cr_expect_eq(mask_of(dev, 3), 0u);
        cr_expect_eq(t, 30);
    }
    /* 2. Same ops with cheap copies: all on the GPU in one submit group
     *    (1 + 15 + 1 + 5 = 22 < 30). */
    {
        double cpu[3] = {10, 10, 10}, gpu[3] = {5, 5, 5};
        double h2d[4] = {1, 1, 1, 1}, d2h[4] = {1, 1, 1, 1};
        place(3, cpu, gpu, h2d, d2h, 5, dev, &t);
        cr_expect_eq(mask_of(dev, 3), 7u);
        cr_expect_eq(t, 22);
    }
    /* 3. The middle op is cheaper on the CPU by 2, but leaving the GPU
     *    costs a copy out, a copy in and a second launch (3 + 3 + 5): the
     *    chain keeps it on the GPU although a per-op choice would not. */
    {
        double cpu[3] = {100, 4, 100}, gpu[3] = {10, 6, 10};
        double h2d[4] = {3, 3, 3, 3}, d2h[4] = {3, 3, 3, 3};
        place(3, cpu, gpu, h2d, d2h, 5, dev, &t);
        cr_expect_eq(mask_of(dev, 3), 7u);
        cr_expect_eq(t, 3 + 5 + 10 + 6 + 10 + 3);
    }
    /* 4. A very slow GPU op in the middle (80 vs 4): split into two
     *    groups, the middle on the CPU. */
    {
        double cpu[3] = {100, 4, 100}, gpu[3] = {10, 80, 10};
        double h2d[4] = {3, 3, 3, 3}, d2h[4] = {3, 3, 3, 3};
        place(3, cpu, gpu, h2d, d2h, 5, dev, &t);
        cr_expect_eq(mask_of(dev, 3), 5u);
        cr_expect_eq(t, (3 + 5 + 10 + 3) + 4 + (3 + 5 + 10 + 3));
    }
    /* 5. An op the GPU cannot run forces the CPU even when it is dear. */
    {
        double cpu[2] = {50, 50}, gpu[2] = {-1, 1};
        place(2, cpu, gpu, z, z, 0, dev, &t);
        cr_expect_eq(mask_of(dev, 2), 2u);
        cr_expect_eq(t, 51);
    }
    /* 6. Free copies and launches: each op where it is cheaper. */
    {
        double cpu[4] = {1, 9, 1, 9}, gpu[4] = {9, 1, 9, 1};
        place(4, cpu, gpu, z, z, 0, dev, &t);
        cr_expect_eq(mask_of(dev, 4), 10u);
        cr_expect_eq(t, 4);
    }
    /* 7. A tie goes to the CPU. */
    {
        double cpu[1] = {10}, gpu[1] = {5};
        double h2d[2] = {2, 0}, d2h[2] = {0, 3};
        place(1, cpu, gpu, h2d, d2h, 0, dev, &t);
        cr_expect_eq(dev[0], 0);
        cr_expect_eq(t, 10);
    }
    /* Limits. */
    {
        mf_chain_costs c = {.n = 0};
        cr_expect_eq(mf_chain_place(&c, dev), 0);
        c.n = MF_CHAIN_MAX + 1;
        dev[0] = 7;
        cr_expect_eq(mf_chain_place(&c, dev), -1);
        cr_expect_eq(dev[0], 7);
    }
}

/* ------------------------------------------------------- mocked profile -- */

/* A context as the router sees it: a GPU handle that is never touched and
 * the fixture's placement. */
typedef struct mock {
    struct mf_ctx ctx;
    int gpu_token;
} mock;

static void mock_init(mock *m, mf_placement *p, int with_gpu)
{
    memset(m, 0, sizeof *m);
    m->ctx.gpu = with_gpu ? (mf_gpu *)&m->gpu_token : NULL;
    m->ctx.placement = p;
    m->ctx.cache_status = p ? MF_OK : MF_ERR_IO;
}

static mf_route_shape rshape(const mf_op_shape *s)
{
    return (mf_route_shape){.op = (mf_route_op)s->op, .T = s->T, .E = s->E,
                            .k = s->k, .N = s->N, .K = s->K,
                            .wtype = s->wtype, .mode = s->mode};
}

static mf_op_shape qmv(int64_t T)
{
    return (mf_op_shape){.op = MF_OP_QMV, .T = T, .E = 1, .N = 2048,
                         .K = 768, .wtype = MF_TYPE_Q4_0};
}

static mf_op_shape glu(int64_t T, int64_t n)
{
    return (mf_op_shape){.op = MF_OP_GLU, .T = T, .N = n,
                         .wtype = MF_TYPE_F32};
}

static int truth_gpu(const mf_op_shape *s)
{
    return pcf_gpu_us(s) < pcf_cpu_us(s);
}

Test(dispatch, router_mocked_profile)
{
    mf_placement *p = pcf_make(1);
    mock m;
    mock_init(&m, p, 1);
    mf_route_decision d;

    /* Measured buckets: the fixture's qmv crosses over between T = 1 and
     * T = 2 (the CPU's compute term grows 100x faster). */
    cr_assert(!truth_gpu(&(mf_op_shape){.op = MF_OP_QMV, .T = 1, .E = 1,
                                        .N = 2048, .K = 768,
                                        .wtype = MF_TYPE_Q4_0}));
    for (int64_t T = 1; T <= 64; T *= 2) {
        mf_op_shape s = qmv(T);
        mf_route_shape rs = rshape(&s);
        cr_assert_eq(mf_route_explain(&m.ctx, &rs, &d), MF_OK);
        cr_expect_eq(d.source, MF_ROUTE_SRC_MEASURED, "T=%lld", (long long)T);
        cr_expect_eq(d.device, truth_gpu(&s) ? MF_DEVICE_GPU : MF_DEVICE_CPU,
                     "T=%lld", (long long)T);
        cr_expect_eq(mf_route_gpu(&m.ctx, &s), truth_gpu(&s));
        /* Predicted costs are the measured ones: cpu exact, the GPU's
         * launch + device part + copies adding back up to its median. */
        cr_expect_eq(d.cpu_us, pcf_cpu_us(&s));
        cr_expect(fabs(d.gpu_us + d.gpu_transfer_us - pcf_gpu_us(&s)) <=
                      1e-9 * pcf_gpu_us(&s),
                  "gpu %.9g + copies %.9g vs %.9g", d.gpu_us,
                  d.gpu_transfer_us, pcf_gpu_us(&s));
    }
    /* Repeated and alternating shapes: the router remembers each op's last
     * decision and must notice every change of shape. */
    for (int rep = 0; rep < 3; rep++) {
        mf_op_shape a = qmv(1), b = qmv(4), c = glu(4, 768);
        cr_expect_eq(mf_route_gpu(&m.ctx, &a), 0);
        cr_expect_eq(mf_route_gpu(&m.ctx, &a), 0);
        cr_expect_eq(mf_route_gpu(&m.ctx, &b), 1);
        cr_expect_eq(mf_route_gpu(&m.ctx, &c), 0);
        cr_expect_eq(mf_route_gpu(&m.ctx, &b), 1);
        /* Another format of the same op (the pooled model decides): the
         * same answer as the uncached query. */
        b.wtype = MF_TYPE_Q8_0;
        mf_route_shape rb = rshape(&b);
        cr_assert_eq(mf_route_explain(&m.ctx, &rb, &d), MF_OK);
        cr_expect_eq(d.source, MF_ROUTE_SRC_MODEL);
        cr_expect_eq(mf_route_gpu(&m.ctx, &b), d.device == MF_DEVICE_GPU);
        cr_expect_eq(mf_route_gpu(&m.ctx, &a), 0);
    }
    /* Unmeasured T: the fitted models (the fixture's costs are exactly
     * linear in bytes and flops, so the decision must be the truth). */
    for (int64_t T = 3; T <= 31; T += 2) {
        mf_op_shape s = qmv(T);
        mf_route_shape rs = rshape(&s);
        cr_assert_eq(mf_route_explain(&m.ctx, &rs, &d), MF_OK);
        cr_expect_eq(d.source, MF_ROUTE_SRC_MODEL);
        cr_expect_eq(d.device, truth_gpu(&s) ? MF_DEVICE_GPU : MF_DEVICE_CPU,
                     "T=%lld", (long long)T);
        /* Models fitted on exact data: predictions within 1e-6. */
        cr_expect(fabs(d.cpu_us - pcf_cpu_us(&s)) <= 1e-6 * pcf_cpu_us(&s),
                  "cpu %.9g vs %.9g", d.cpu_us, pcf_cpu_us(&s));
    }
    /* T = 48 is looked up in the T = 64 bucket. */
    mf_op_shape s48 = qmv(48);
    mf_route_shape rs48 = rshape(&s48);
    cr_assert_eq(mf_route_explain(&m.ctx, &rs48, &d), MF_OK);
    cr_expect_eq(d.source, MF_ROUTE_SRC_MEASURED);
    cr_expect_eq(d.cpu_us, pcf_cpu_us(&(mf_op_shape){.op = MF_OP_QMV,
                                                      .T = 64, .E = 1,
                                                      .N = 2048, .K = 768,
                                                      .wtype = MF_TYPE_Q4_0}));
    /* The small element-wise op stays on the CPU at every T. */
    for (int64_t T = 1; T <= 64; T++) {
        mf_op_shape s = glu(T, 768);
        cr_expect(!truth_gpu(&s));
        cr_expect_eq(mf_route_gpu(&m.ctx, &s), 0, "glu T=%lld", (long long)T);
    }
    /* Copies decide: a huge glu whose GPU kernels plus launch beat the CPU,
     * but whose copies in and out do not. */
    mf_op_shape big = glu(64, 1 << 20);
    mf_route_shape rbig = rshape(&big);
    cr_assert_eq(mf_route_explain(&m.ctx, &rbig, &d), MF_OK);
    cr_expect_eq(d.source, MF_ROUTE_SRC_MODEL);
    cr_expect(d.gpu_us < d.cpu_us, "kernels + launch %.1f vs cpu %.1f",
              d.gpu_us, d.cpu_us);
    cr_expect_gt(d.gpu_us + d.gpu_transfer_us, d.cpu_us);
    cr_expect_eq(d.device, MF_DEVICE_CPU);
    /* An op with no measurement and no model: the built-in rule. */
    mf_op_shape comb = {.op = MF_OP_COMBINE, .T = 8, .k = 8, .N = 2048,
                        .wtype = MF_TYPE_F32};
    mf_route_shape rcomb = rshape(&comb);
    cr_assert_eq(mf_route_explain(&m.ctx, &rcomb, &d), MF_OK);
    cr_expect_eq(d.source, MF_ROUTE_SRC_BUILTIN);
    cr_expect_eq(d.device, MF_DEVICE_CPU);
    cr_expect_lt(d.cpu_us, 0);
    cr_expect_eq(mf_route_gpu(&m.ctx, &comb), 0);
    mf_placement_free(p);
}

Test(dispatch, router_regret_noisy_profile)
{
    /* The fixture's measurements with +-5% multiplicative noise and the
     * profiler's models refitted to them: on every unmeasured T of 1..64 the router's choice
     * costs (in true time) at most 10% more than the better device. */
    mft_rng r = mft_rng_make(__LINE__);
    mf_placement *p = pcf_make(1);
    for (size_t i = 0; i < p->n_pts; i++) {
        double f = 1 + mft_uniform(&r, -0.05f, 0.05f);
        p->pts[i].median_us *= f;
        p->pts[i].p10_us = p->pts[i].median_us * 0.95;
        p->pts[i].p90_us = p->pts[i].median_us * 1.05;
    }
    cr_assert_eq(mf_placement_finish(p), MF_OK);
    cr_assert_eq(mf_profile_fit(p), MF_OK);
    mock m;
    mock_init(&m, p, 1);
    double worst = 0;
    for (int op = 0; op < 2; op++) {
        for (int64_t T = 1; T <= 64; T++) {
            mf_op_shape s = op ? glu(T, 768) : qmv(T);
            if (mf_placement_find(p, &s, MF_DEVICE_CPU) &&
                mf_shape_bucket(&s).T == T)
                continue; /* measured: not what this test is about */
            mf_route_shape rs = rshape(&s);
            mf_route_decision d;
            cr_assert_eq(mf_route_explain(&m.ctx, &rs, &d), MF_OK);
            double c = pcf_cpu_us(&s), g = pcf_gpu_us(&s);
            double chosen = d.device == MF_DEVICE_GPU ? g : c;
            worst = fmax(worst, chosen / fmin(c, g) - 1);
        }
    }
    cr_log_info("worst regret on unmeasured shapes: %.2f%%", 100 * worst);
    cr_expect_leq(worst, 0.10, "regret %.1f%%", 100 * worst);
    mf_placement_free(p);
}

Test(dispatch, router_chain_plan)
{
    mf_placement *p = pcf_make(1);
    mock m;
    mock_init(&m, p, 1);
    /* qmv -> glu -> qmv at several T: the plan is never worse than all-CPU,
     * all-GPU or "offload when T >= 32", and GPU calls form groups. */
    for (int64_t T = 1; T <= 64; T *= 2) {
        mf_op_shape s[3] = {qmv(T), glu(T, 1024), qmv(T)};
        mf_route_shape rs[3] = {rshape(&s[0]), rshape(&s[1]), rshape(&s[2])};
        mf_route_plan plan;
        cr_assert_eq(mf_route_chain(&m.ctx, rs, 3, &plan), MF_OK);
        cr_expect_eq(plan.n, 3);
        cr_expect_leq(plan.total_us, plan.all_cpu_us + 1e-9);
        cr_expect_leq(plan.total_us, plan.all_gpu_us + 1e-9);
        double offload = T >= 32 ? plan.all_gpu_us : plan.all_cpu_us;
        cr_expect_leq(plan.total_us, offload + 1e-9);
        int groups = 0;
        for (int i = 0; i < 3; i++) {
            if (plan.device[i] == MF_DEVICE_GPU) {
                if (i == 0 || plan.device[i - 1] != MF_DEVICE_GPU)
                    groups++;
                cr_expect_eq(plan.group[i], groups - 1);
            } else {
                cr_expect_eq(plan.group[i], -1);
            }
        }
        cr_expect_eq(plan.n_groups, groups);
        cr_expect(plan.source == MF_ROUTE_SRC_MODEL ||
                  plan.source == MF_ROUTE_SRC_MEASURED);
        /* A chain of one is the single-op decision. */
        mf_route_plan one;
        mf_route_decision d;
        cr_assert_eq(mf_route_chain(&m.ctx, rs, 1, &one), MF_OK);
        cr_assert_eq(mf_route_explain(&m.ctx, &rs[0], &d), MF_OK);
        cr_expect_eq(one.device[0], d.device, "T=%lld", (long long)T);
    }
    /* At T = 64 the GPU wins qmv by far: the glu between them rides along
     * on the GPU instead of paying two copies and a second launch. */
    mf_op_shape s[3] = {qmv(64), glu(64, 1024), qmv(64)};
    mf_route_shape rs[3] = {rshape(&s[0]), rshape(&s[1]), rshape(&s[2])};
    mf_route_plan plan;
    cr_assert_eq(mf_route_chain(&m.ctx, rs, 3, &plan), MF_OK);
    cr_expect_eq(plan.device[0], MF_DEVICE_GPU);
    cr_expect_eq(plan.device[1], MF_DEVICE_GPU);
    cr_expect_eq(plan.device[2], MF_DEVICE_GPU);
    cr_expect_eq(plan.n_groups, 1);
    mf_placement_free(p);
}

/* The one-submit question of a caller that otherwise runs the calls one by
 * one (mf_moe_layer): the one submit against the sum of the calls' own
 * decisions (each GPU call its own submit and copies), not against the
 * chain plan's best split, whose GPU groups such a caller cannot form. */
Test(dispatch, router_one_submit)
{
    mf_placement *p = pcf_make(1);
    mock m;
    mock_init(&m, p, 1);
    int split_but_submit = 0, plan_all_gpu = 0, ops_win = 0;
    for (int64_t T = 1; T <= 64; T++)
        for (int mix = 0; mix < 4; mix++) {
            mf_op_shape s[3] = {mix & 1 ? glu(T, 1024) : qmv(T), qmv(T),
                                mix & 2 ? glu(T, 768) : qmv(T)};
            mf_route_shape rs[3] = {rshape(&s[0]), rshape(&s[1]),
                                    rshape(&s[2])};
            mf_route_plan plan;
            cr_assert_eq(mf_route_chain(&m.ctx, rs, 3, &plan), MF_OK);
            /* op by op, written out from the single-call decisions */
            double ops = 0;
            for (int i = 0; i < 3; i++) {
                mf_route_decision d;
                cr_assert_eq(mf_route_explain(&m.ctx, &rs[i], &d), MF_OK);
                ops += d.device == MF_DEVICE_GPU ? d.gpu_us + d.gpu_transfer_us
                                                 : d.cpu_us;
            }
            double sub_us, ops_us;
            int one = mf_route_one_submit(p, 1, s, 3, &sub_us, &ops_us);
            cr_expect_eq(sub_us, plan.all_gpu_us);
            cr_expect(fabs(ops_us - ops) <= 1e-9 * ops, "%g vs %g", ops_us, ops);
            cr_expect_eq(one, plan.all_gpu_us <= ops, "T=%lld mix %d",
                         (long long)T, mix);
            int all_gpu = plan.n_groups == 1;
            for (int i = 0; i < 3; i++)
                all_gpu &= plan.device[i] == MF_DEVICE_GPU;
            /* the plan's own all-GPU verdict is never overturned */
            if (all_gpu) {
                plan_all_gpu++;
                cr_expect_eq(one, 1, "T=%lld mix %d", (long long)T, mix);
            } else if (one == 1) {
                split_but_submit++;
            } else {
                ops_win++;
            }
        }
    cr_log_info("all-GPU plans %d, split plans where one submit wins %d, "
                "op by op wins %d", plan_all_gpu, split_but_submit, ops_win);
    cr_expect_gt(plan_all_gpu, 0);
    cr_expect_gt(ops_win, 0);
    cr_expect_gt(split_but_submit, 0,
                 "no chain here whose best plan splits while one submit "
                 "still beats the calls one by one");
    /* no GPU, no cache: no verdict */
    mf_op_shape s1 = qmv(32);
    double a, b;
    cr_expect_eq(mf_route_one_submit(p, 0, &s1, 1, &a, &b), -1);
    cr_expect(a < 0 && b < 0);
    cr_expect_eq(mf_route_one_submit(NULL, 1, &s1, 1, &a, &b), -1);
    mf_placement_free(p);
}

Test(dispatch, router_builtin_and_no_gpu)
{
    mf_op_shape s = qmv(32);
    mf_route_shape rs = rshape(&s);
    mf_route_decision d;
    mf_route_plan plan;
    /* A GPU but no cache: the built-in rule, the CPU, no predictions. */
    mock m;
    mock_init(&m, NULL, 1);
    cr_assert_eq(mf_route_explain(&m.ctx, &rs, &d), MF_OK);
    cr_expect_eq(d.source, MF_ROUTE_SRC_BUILTIN);
    cr_expect_eq(d.device, MF_DEVICE_CPU);
    cr_expect_lt(d.cpu_us, 0);
    cr_expect_lt(d.gpu_us, 0);
    cr_expect_eq(mf_route_gpu(&m.ctx, &s), 0);
    cr_assert_eq(mf_route_chain(&m.ctx, &rs, 1, &plan), MF_OK);
    cr_expect_eq(plan.source, MF_ROUTE_SRC_BUILTIN);
    cr_expect_eq(plan.device[0], MF_DEVICE_CPU);
    /* A cache that says the GPU wins, but no GPU: the CPU. */
    mf_placement *p = pcf_make(1);
    mock_init(&m, p, 0);
    cr_assert_eq(mf_route_explain(&m.ctx, &rs, &d), MF_OK);
    cr_expect_eq(d.source, MF_ROUTE_SRC_NO_GPU);
    cr_expect_eq(d.device, MF_DEVICE_CPU);
    cr_expect_eq(d.cpu_us, pcf_cpu_us(&s), "the CPU prediction is reported");
    cr_expect_eq(mf_route_gpu(&m.ctx, &s), 0);
    cr_assert_eq(mf_route_chain(&m.ctx, &rs, 1, &plan), MF_OK);
    cr_expect_eq(plan.source, MF_ROUTE_SRC_NO_GPU);
    cr_expect_lt(plan.all_gpu_us, 0);
    mf_placement_free(p);
    /* A real context of this machine without a GPU. */
    mf_ctx *ctx = mft_ctx();
    cr_assert_eq(mf_route_explain(ctx, &rs, &d), MF_OK);
    cr_expect_eq(d.source, MF_ROUTE_SRC_NO_GPU);
    cr_expect_eq(d.device, MF_DEVICE_CPU);
}

Test(dispatch, router_bad_arguments)
{
    mf_ctx *ctx = mft_ctx();
    mf_op_shape s = qmv(4);
    mf_route_shape ok = rshape(&s), bad;
    mf_route_decision d, keep;
    memset(&keep, 0x5a, sizeof keep);
    d = keep;
    cr_expect_eq(mf_route_explain(NULL, &ok, &d), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_route_explain(ctx, NULL, &d), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_route_explain(ctx, &ok, NULL), MF_ERR_INVALID_ARG);
    const mf_route_shape bads[] = {
        {.op = MF_ROUTE_OP_COUNT_, .T = 1},
        {.op = (mf_route_op)-1, .T = 1},
        {.op = MF_ROUTE_QMV, .T = -1},
        {.op = MF_ROUTE_QMV, .T = MF_MAX_T + 1},
        {.op = MF_ROUTE_QMV, .T = 1, .E = MF_MAX_E + 1},
        {.op = MF_ROUTE_QMV, .T = 1, .k = -1},
        {.op = MF_ROUTE_QMV, .T = 1, .N = MF_MAX_DIM + 1},
        {.op = MF_ROUTE_QMV, .T = 1, .K = -5},
        {.op = MF_ROUTE_QMV, .T = 1, .wtype = MF_TYPE_COUNT_},
        {.op = MF_ROUTE_QMV, .T = 1, .mode = -1},
    };
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        bad = bads[i];
        cr_expect_eq(mf_route_explain(ctx, &bad, &d), MF_ERR_INVALID_ARG,
                     "shape %zu", i);
    }
    cr_expect_eq(memcmp(&d, &keep, sizeof d), 0, "output written on error");

    mf_route_plan plan, pkeep;
    memset(&pkeep, 0x5a, sizeof pkeep);
    plan = pkeep;
    mf_route_shape chain[MF_ROUTE_CHAIN_MAX + 1];
    for (int i = 0; i <= MF_ROUTE_CHAIN_MAX; i++)
        chain[i] = ok;
    cr_expect_eq(mf_route_chain(NULL, chain, 1, &plan), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_route_chain(ctx, NULL, 1, &plan), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_route_chain(ctx, chain, 1, NULL), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_route_chain(ctx, chain, 0, &plan), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_route_chain(ctx, chain, MF_ROUTE_CHAIN_MAX + 1, &plan),
                 MF_ERR_INVALID_ARG);
    chain[3] = bads[2];
    cr_expect_eq(mf_route_chain(ctx, chain, 5, &plan), MF_ERR_INVALID_ARG);
    cr_expect_eq(memcmp(&plan, &pkeep, sizeof plan), 0);
    cr_expect_eq(mf_route_chain(ctx, chain, MF_ROUTE_CHAIN_MAX, &plan),
                 MF_ERR_INVALID_ARG);
    chain[3] = ok;
    cr_expect_eq(mf_route_chain(ctx, chain, MF_ROUTE_CHAIN_MAX, &plan), MF_OK);
    cr_expect_eq(plan.n, MF_ROUTE_CHAIN_MAX);

    cr_expect_str_eq(mf_route_op_name(MF_ROUTE_MOE_DOWN_COMBINE),
                     "moe_down_combine");
    cr_expect_str_eq(mf_route_op_name((mf_route_op)99), "?");
    cr_expect_str_eq(mf_route_source_name(MF_ROUTE_SRC_MODEL), "model");
    cr_expect_str_eq(mf_route_source_name((mf_route_source)-1), "?");
}

Test(dispatch, cost_model_fit)
{
    /* NNLS on exact data recovers the coefficients; a negative slope in the
     * data is clamped to 0 instead of going negative. */
    double X[8 * 3], y[8], c[3];
    for (int i = 0; i < 8; i++) {
        X[i * 3] = 1;
        X[i * 3 + 1] = 1000.0 * (i + 1);
        X[i * 3 + 2] = 37.0 * (i * i + 1);
        y[i] = 3 + 0.002 * X[i * 3 + 1] + 0.05 * X[i * 3 + 2];
    }
    cr_assert_eq(mf_nnls(X, y, 8, 3, c), 0);
    cr_expect(fabs(c[0] - 3) < 1e-6 && fabs(c[1] - 0.002) < 1e-9 &&
                  fabs(c[2] - 0.05) < 1e-9,
              "%g %g %g", c[0], c[1], c[2]);
    for (int i = 0; i < 8; i++)
        y[i] = 100 - 0.001 * X[i * 3 + 1];
    cr_assert_eq(mf_nnls(X, y, 8, 3, c), 0);
    cr_expect(c[0] >= 0 && c[1] >= 0 && c[2] >= 0);
    cr_expect_eq(c[1], 0);
    cr_expect_eq(mf_nnls(X, y, 0, 3, c), -1);

    /* Held-out error is reported and small on linear data. */
    mf_op_shape sh[8];
    double us[8];
    for (int i = 0; i < 8; i++) {
        sh[i] = qmv(i + 1);
        us[i] = pcf_cpu_us(&sh[i]);
    }
    mf_pc_model mdl = {0};
    cr_assert_eq(mf_model_fit(sh, us, NULL, 8, &mdl), 0);
    cr_expect_geq(mdl.heldout_med_err, 0);
    cr_expect_lt(mdl.heldout_max_err, 1e-6);
    cr_expect_eq(mdl.n_points, 8);
    cr_assert_eq(mf_model_fit(sh, us, NULL, 3, &mdl), 0);
    cr_expect_eq(mdl.heldout_med_err, -1, "too few points to hold out");
}
