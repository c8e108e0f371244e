/* Chain placement: the device of every op of a chain that minimizes the
 * total time, by dynamic programming over (op, device). A pure function of
 * its cost tables. Not installed. */
#ifndef MF_DISPATCH_CHAIN_H
#define MF_DISPATCH_CHAIN_H

/* Costs of a chain of n ops where op i's output is op i+1's input; the
 * chain's input starts in host memory and its output must end there.
 * Boundary b (0..n) is the data entering op b (b = 0: the chain's input;
 * b = n: the chain's output on its way to the host). */
typedef struct mf_chain_costs {
    int n;
    const double *cpu_us; /* [n] op i on the CPU */
    const double *gpu_us; /* [n] op i on the GPU, its kernels only (plus any
                             side inputs it uploads); < 0: cannot run there */
    const double *h2d_us; /* [n+1] boundary b copied host -> GPU */
    const double *d2h_us; /* [n+1] boundary b copied GPU -> host */
    double launch_us;     /* one per GPU submit group (a maximal run of
                             consecutive GPU ops) */
} mf_chain_costs;

#define MF_CHAIN_MAX 64

/* Writes the best device of each op to dev[0..n-1] (0 CPU, 1 GPU) and
 * returns the total: sum of op times + a copy at every boundary whose two
 * sides differ + a launch per GPU group. Ties go to the CPU. n <= 0 returns
 * 0; n > MF_CHAIN_MAX returns -1 with dev untouched. */
double mf_chain_place(const mf_chain_costs *c, int *dev);

/* The total of a given placement under the same cost rules. */
double mf_chain_cost(const mf_chain_costs *c, const int *dev);

#endif
