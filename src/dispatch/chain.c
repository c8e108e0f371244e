/* Chain placement by dynamic programming (see chain.h). */
#include <math.h>

#include "chain.h"

/* Cost of entering op i on device d from device `from` (the device of op
 * i-1, or the host for i = 0): the copy across boundary i and, when a GPU
 * group starts, its launch. */
static double step(const mf_chain_costs *c, int i, int from, int d)
{
    double t = 0;
    if (from == 0 && d == 1)
        t += c->h2d_us[i] + c->launch_us;
    else if (from == 1 && d == 0)
        t += c->d2h_us[i];
    return t;
}

static double op_cost(const mf_chain_costs *c, int i, int d)
{
    if (d == 0)
        return c->cpu_us[i];
    return c->gpu_us[i] < 0 ? INFINITY : c->gpu_us[i];
}

double mf_chain_cost(const mf_chain_costs *c, const int *dev)
{
    double t = 0;
    int from = 0;
    for (int i = 0; i < c->n; i++) {
        t += step(c, i, from, dev[i]) + op_cost(c, i, dev[i]);
        from = dev[i];
    }
    return t + step(c, c->n, from, 0);
}

double mf_chain_place(const mf_chain_costs *c, int *dev)
{
    int n = c->n;
    if (n <= 0 || n > MF_CHAIN_MAX)
        return n <= 0 ? 0 : -1;
    /* best[d]: least cost of ops 0..i with op i on d; from[i][d]: the device
     * of op i-1 on that path. */
    unsigned char from[MF_CHAIN_MAX][2];
    double best[2];
    for (int d = 0; d < 2; d++) {
        best[d] = step(c, 0, 0, d) + op_cost(c, 0, d);
        from[0][d] = 0;
    }
    for (int i = 1; i < n; i++) {
        double nb[2];
        for (int d = 0; d < 2; d++) {
            double via_cpu = best[0] + step(c, i, 0, d);
            double via_gpu = best[1] + step(c, i, 1, d);
            int f = via_gpu < via_cpu; /* ties: stay with the CPU path */
            nb[d] = (f ? via_gpu : via_cpu) + op_cost(c, i, d);
            from[i][d] = (unsigned char)f;
        }
        best[0] = nb[0];
        best[1] = nb[1];
    }
    double end_cpu = best[0], end_gpu = best[1] + step(c, n, 1, 0);
    int d = end_gpu < end_cpu;
    for (int i = n - 1; i >= 0; i--) {
        dev[i] = d;
        d = from[i][d];
    }
    return end_gpu < end_cpu ? end_gpu : end_cpu;
}
