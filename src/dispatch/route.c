/* The router: where an MF_IMPL_AUTO call runs (mf_route_gpu), the public
 * queries of its decisions, and chain placement.
 *
 * Built-in rule (no usable placement cache, or no prediction for one of the
 * devices): the CPU. A GPU is used only where this machine's own
 * measurements say it wins, counting the copies of the call's inputs and
 * outputs: the penalty of a wrong GPU choice (a submit round trip of tens of
 * microseconds plus copies, FACTS.md) dwarfs what a GPU can save on a decode
 * step, while a wrong CPU choice costs at most the GPU's advantage. */
#include "cache.h"
#include "chain.h"
#include "costmodel.h"

_Static_assert((int)MF_ROUTE_GATING == (int)MF_OP_GATING &&
                   (int)MF_ROUTE_COMBINE == (int)MF_OP_COMBINE &&
                   (int)MF_ROUTE_GLU == (int)MF_OP_GLU &&
                   (int)MF_ROUTE_DEQUANT_ACT == (int)MF_OP_DEQUANT &&
                   (int)MF_ROUTE_QMV == (int)MF_OP_QMV &&
                   (int)MF_ROUTE_MOE_GATE_UP == (int)MF_OP_MOE_GATE_UP &&
                   (int)MF_ROUTE_MOE_DOWN_COMBINE == (int)MF_OP_MOE_DOWN &&
                   (int)MF_ROUTE_OP_COUNT_ == (int)MF_OP_COUNT_,
               "public and internal op ids agree");
_Static_assert(MF_ROUTE_CHAIN_MAX == MF_CHAIN_MAX, "chain limits agree");

const char *mf_route_op_name(mf_route_op op) { return mf_op_name((int)op); }

const char *mf_route_source_name(mf_route_source s)
{
    static const char *const names[MF_ROUTE_SRC_COUNT_] = {
        "no-gpu", "builtin", "measured", "model"};
    return ((unsigned)s < MF_ROUTE_SRC_COUNT_) ? names[s] : "?";
}

void mf_route_decide(const mf_placement *p, int have_gpu,
                     const mf_op_shape *s, mf_route_decision *d)
{
    mf_op_pred pr = mf_op_predict(p, s, have_gpu);
    *d = (mf_route_decision){.device = MF_DEVICE_CPU,
                             .source = MF_ROUTE_SRC_NO_GPU,
                             .cpu_us = pr.cpu_us,
                             .gpu_us = -1,
                             .gpu_transfer_us = -1};
    if (!have_gpu)
        return;
    d->source = MF_ROUTE_SRC_BUILTIN;
    if (pr.cpu_us < 0 || pr.gpu_dev_us < 0)
        return;
    d->gpu_us = pr.gpu_launch_us + pr.gpu_dev_us;
    d->gpu_transfer_us = pr.gpu_in_us + pr.gpu_out_us;
    const mf_pc_decision *m = pr.measured ? mf_placement_decision(p, s) : NULL;
    if (m) {
        d->source = MF_ROUTE_SRC_MEASURED;
        d->device = (mf_device)m->dev;
    } else {
        d->source = MF_ROUTE_SRC_MODEL;
        d->device = d->gpu_us + d->gpu_transfer_us < d->cpu_us ? MF_DEVICE_GPU
                                                               : MF_DEVICE_CPU;
    }
}

int mf_route_gpu(const mf_ctx *ctx, const mf_op_shape *s)
{
    mf_placement *p = ctx->placement;
    if (!ctx->gpu || !p)
        return 0;
    /* A decode loop repeats its shapes: remember each op's last decision
     * (the context serves one thread at a time, so this needs no lock). */
    unsigned op = (unsigned)s->op;
    if (op < MF_OP_COUNT_ && p->memo_ok[op] &&
        mf_shape_cmp(&p->memo[op], s) == 0)
        return p->memo_gpu[op];
    mf_route_decision d;
    mf_route_decide(p, 1, s, &d);
    int gpu = d.device == MF_DEVICE_GPU;
    if (op < MF_OP_COUNT_) {
        p->memo[op] = *s;
        p->memo_gpu[op] = gpu;
        p->memo_ok[op] = 1;
    }
    return gpu;
}

static int shape_from(const mf_route_shape *r, mf_op_shape *s)
{
    if ((unsigned)r->op >= MF_ROUTE_OP_COUNT_ ||
        (unsigned)r->wtype >= MF_TYPE_COUNT_ || r->T < 0 || r->T > MF_MAX_T ||
        r->E < 0 || r->E > MF_MAX_E || r->k < 0 || r->k > MF_MAX_E ||
        r->N < 0 || r->N > MF_MAX_DIM || r->K < 0 || r->K > MF_MAX_DIM ||
        r->mode < 0 || r->mode > 65535)
        return 0;
    *s = (mf_op_shape){.op = (mf_op_id)r->op, .T = r->T, .E = r->E, .k = r->k,
                       .N = r->N, .K = r->K, .wtype = r->wtype,
                       .mode = r->mode};
    return 1;
}

mf_status mf_route_explain(const mf_ctx *ctx, const mf_route_shape *s,
                           mf_route_decision *out)
{
    mf_op_shape sh;
    if (!ctx || !s || !out || !shape_from(s, &sh))
        return MF_ERR_INVALID_ARG;
    mf_route_decide(ctx->placement, ctx->gpu != NULL, &sh, out);
    return MF_OK;
}

/* Sums x[0..n-1], or -1 when any is unknown (< 0). */
static double sum_known(const double *x, int n)
{
    double t = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] < 0)
            return -1;
        t += x[i];
    }
    return t;
}

void mf_route_plan_chain(const mf_placement *p, int have_gpu,
                         const mf_op_shape *s, int n, mf_route_plan *out)
{
    double cpu[MF_ROUTE_CHAIN_MAX], gpu[MF_ROUTE_CHAIN_MAX];
    double h2d[MF_ROUTE_CHAIN_MAX + 1], d2h[MF_ROUTE_CHAIN_MAX + 1];
    int measured = 1, known = 1;
    for (int i = 0; i < n; i++) {
        mf_op_pred pr = mf_op_predict(p, &s[i], have_gpu);
        cpu[i] = pr.cpu_us;
        gpu[i] = pr.gpu_dev_us;
        measured &= pr.measured;
        known &= pr.cpu_us >= 0 && pr.gpu_dev_us >= 0;
    }
    mf_route_plan plan = {.n = n, .n_groups = 0, .all_gpu_us = -1};
    plan.all_cpu_us = sum_known(cpu, n);
    plan.total_us = plan.all_cpu_us;
    for (int i = 0; i < n; i++) {
        plan.device[i] = MF_DEVICE_CPU;
        plan.group[i] = -1;
    }
    plan.source = have_gpu ? MF_ROUTE_SRC_BUILTIN : MF_ROUTE_SRC_NO_GPU;
    if (!have_gpu || !known) {
        *out = plan;
        return;
    }

    /* Copies at each boundary, and each op's other host inputs (those not
     * produced by the previous op) uploaded with it. */
    const mf_pc_curve *up = p->gpu.measured ? &p->gpu.h2d : NULL;
    const mf_pc_curve *down = p->gpu.measured ? &p->gpu.d2h : NULL;
    for (int b = 0; b <= n; b++) {
        double bytes = b == 0 ? mf_op_features(&s[0]).in_bytes
                              : mf_op_features(&s[b - 1]).out_bytes;
        h2d[b] = up ? mf_curve_eval(up, bytes) : 0;
        d2h[b] = down ? mf_curve_eval(down, bytes) : 0;
        if (b > 0 && b < n && up) {
            double side = mf_op_features(&s[b]).in_bytes - bytes;
            if (side > 0)
                gpu[b] += up->b_us_per_byte * side;
        }
    }
    mf_chain_costs c = {.n = n, .cpu_us = cpu, .gpu_us = gpu, .h2d_us = h2d,
                        .d2h_us = d2h,
                        .launch_us = up ? p->gpu.roundtrip_us : 0};
    int dev[MF_ROUTE_CHAIN_MAX], all_gpu[MF_ROUTE_CHAIN_MAX];
    plan.total_us = mf_chain_place(&c, dev);
    for (int i = 0; i < n; i++)
        all_gpu[i] = 1;
    plan.all_gpu_us = mf_chain_cost(&c, all_gpu);
    for (int i = 0; i < n; i++) {
        plan.device[i] = dev[i] ? MF_DEVICE_GPU : MF_DEVICE_CPU;
        if (dev[i] && (i == 0 || !dev[i - 1]))
            plan.n_groups++;
        plan.group[i] = dev[i] ? plan.n_groups - 1 : -1;
    }
    plan.source = measured ? MF_ROUTE_SRC_MEASURED : MF_ROUTE_SRC_MODEL;
    *out = plan;
}

int mf_route_one_submit(const mf_placement *p, int have_gpu,
                        const mf_op_shape *s, int n, double *submit_us,
                        double *ops_us)
{
    double sub = -1, ops = -1;
    if (have_gpu && p && n >= 1 && n <= MF_ROUTE_CHAIN_MAX) {
        mf_route_plan plan;
        mf_route_plan_chain(p, have_gpu, s, n, &plan);
        sub = plan.source == MF_ROUTE_SRC_MEASURED ||
                      plan.source == MF_ROUTE_SRC_MODEL
                  ? plan.all_gpu_us
                  : -1;
        ops = 0;
        for (int i = 0; i < n; i++) {
            mf_route_decision d;
            mf_route_decide(p, have_gpu, &s[i], &d);
            const int gpu = d.device == MF_DEVICE_GPU;
            if (gpu ? d.gpu_us < 0 || d.gpu_transfer_us < 0 : d.cpu_us < 0) {
                ops = -1;
                break;
            }
            ops += gpu ? d.gpu_us + d.gpu_transfer_us : d.cpu_us;
        }
    }
    if (submit_us)
        *submit_us = sub;
    if (ops_us)
        *ops_us = ops;
    if (sub < 0 || ops < 0)
        return -1;
    return sub <= ops;
}

mf_status mf_route_chain(const mf_ctx *ctx, const mf_route_shape *ops,
                         int32_t n, mf_route_plan *out)
{
    if (!ctx || !ops || !out || n < 1 || n > MF_ROUTE_CHAIN_MAX)
        return MF_ERR_INVALID_ARG;
    mf_op_shape s[MF_ROUTE_CHAIN_MAX];
    for (int i = 0; i < n; i++)
        if (!shape_from(&ops[i], &s[i]))
            return MF_ERR_INVALID_ARG;
    mf_route_plan_chain(ctx->placement, ctx->gpu != NULL, s, n, out);
    return MF_OK;
}
