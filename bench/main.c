/* moefuse-bench: CPU (and GPU) benchmarks of every op at real model shapes,
 * with the same-run bandwidth floor, as a table and a JSON results file. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "suite.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: moefuse-bench [cpu|gpu|layer|report] [options]\n"
        "\n"
        "cpu (default): every op at the model shapes (Qwen3-30B-A3B,\n"
        "  Mixtral-8x7B, DeepSeek-V3, GPT-OSS-20B; T = 1 and 32; Q4_0, Q8_0,\n"
        "  MLX q4 g64) for the scalar reference, the unfused baseline and each\n"
        "  kernel set this CPU has.\n"
        "gpu: the empty-dispatch round trip and a device copy (floors), then\n"
        "  each op at decode shapes: host round trip of its pre-recorded plan,\n"
        "  device time, whole call from host arrays, and the CPU's time.\n"
        "report: the CPU-vs-GPU table of gpu for Qwen3-30B-A3B, quick; CPU\n"
        "  times alone when no GPU comes up.\n"
        "layer: one MoE block's decode step (T = 1, 4, 32) per preset and\n"
        "  format: unfused reference, fused CPU, GPU, routed.\n"
        "Prints medians with p10/p90 and GB/s against a STREAM-style triad\n"
        "measured in the same run.\n"
        "\n"
        "options:\n"
        "  --json PATH     also write the results file (bench/results format)\n"
        "  --quick         fewer runs per point\n"
        "  --budget-ms N   time per (op, shape, impl), default 400 (quick 150)\n"
        "  --threads N     worker threads (default: one per physical core)\n"
        "  --op NAME       only ops whose name contains NAME\n"
        "  --model NAME    only this model preset\n"
        "  --mem-gb X      cap on one weight stack (default 1.5)\n"
        "  --forms         gpu: also time the MoE chain with each kernel form\n"
        "                  of its ops off and on, interleaved (same bits)\n"
        "  --no-progress   no progress lines on stderr\n"
        "  -h, --help      this text\n"
        "exit status: 0 ok, 1 an op failed, 2 bad usage\n");
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* tables appear as they are measured */
    bench_opts o = {.budget_us = -1, .mem_gb = 1.5,
                    .progress = isatty(2)};
    const char *json = NULL;
    static const struct option lo[] = {
        {"json", required_argument, 0, 'j'},
        {"quick", no_argument, 0, 'q'},
        {"budget-ms", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'},
        {"op", required_argument, 0, 'o'},
        {"model", required_argument, 0, 'm'},
        {"mem-gb", required_argument, 0, 'g'},
        {"no-progress", no_argument, 0, 'P'},
        {"forms", no_argument, 0, 'F'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'j': json = optarg; break;
        case 'q': o.quick = 1; break;
        case 'b':
            o.budget_us = strtod(optarg, &end) * 1e3;
            if (!end || *end || o.budget_us <= 0) {
                fprintf(stderr, "moefuse-bench: bad --budget-ms '%s'\n", optarg);
                return 2;
            }
            break;
        case 't':
            o.threads = (int)strtol(optarg, &end, 10);
            if (!end || *end || o.threads < 1 || o.threads > 1024) {
                fprintf(stderr, "moefuse-bench: bad --threads '%s'\n", optarg);
                return 2;
            }
            break;
        case 'o': o.filter = optarg; break;
        case 'm': o.model = optarg; break;
        case 'g':
            o.mem_gb = strtod(optarg, &end);
            if (!end || *end || o.mem_gb <= 0) {
                fprintf(stderr, "moefuse-bench: bad --mem-gb '%s'\n", optarg);
                return 2;
            }
            break;
        case 'P': o.progress = 0; break;
        case 'F': o.forms = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    const char *suite = optind < argc ? argv[optind++] : "cpu";
    int is_layer = strcmp(suite, "layer") == 0, is_gpu = strcmp(suite, "gpu") == 0;
    o.report = strcmp(suite, "report") == 0;
    if (o.report) {
        is_gpu = 1;
        o.quick = 1;
    }
    if (optind < argc || (strcmp(suite, "cpu") != 0 && !is_layer && !is_gpu)) {
        fprintf(stderr, "moefuse-bench: unknown suite or extra argument '%s'\n",
                optind < argc ? argv[optind] : suite);
        usage(stderr);
        return 2;
    }
    if (o.model) {
        mf_moe_config probe;
        if (mf_moe_preset(o.model, &probe) != MF_OK) {
            fprintf(stderr, "moefuse-bench: unknown model '%s' (moefuse-validate "
                            "--list lists the presets)\n", o.model);
            return 2;
        }
    }
    if (o.budget_us < 0)
        o.budget_us = o.quick ? 150e3 : 400e3;

    mf_ctx_options co = mf_ctx_options_default();
    co.threads = o.threads;
    co.gpu = is_layer || o.report ? MF_GPU_AUTO
             : is_gpu             ? MF_GPU_REQUIRED
                                  : MF_GPU_DISABLED;
    mf_ctx *ctx;
    mf_status st = mf_ctx_create(&co, &ctx);
    if (st != MF_OK) {
        fprintf(stderr, "moefuse-bench: cannot create a context: %s\n",
                mf_status_str(st));
        return 1;
    }
    int threads = mf_ctx_threads(ctx);
    bench_results res = {.empty_dispatch_us = -1, .device_copy_gbps = -1,
                         .device_read_gbps = -1, .chain_step_us = -1};
    if (o.progress)
        fprintf(stderr, "moefuse-bench: measuring the triad floor...\n");
    size_t n = (size_t)1 << 26; /* 3 arrays of 256 MiB */
    res.triad1_gbps = bench_triad_gbps(n, 1, o.quick ? 5 : 9);
    res.triad_threads = threads;
    res.triad_quick = o.quick;
    bench_floor_refresh(&res);
    printf("moefuse-bench %s: isa %s, %d threads; triad %.1f GB/s (%d threads), "
           "%.1f GB/s (1 thread)\n",
           suite, mf_isa_name(mf_ctx_isa(ctx)), threads, res.triad_gbps, threads,
           res.triad1_gbps);
    printf("%% of triad: against the 1-thread triad for ref, the %d-thread "
           "triad otherwise\n\n", threads);
    int rc = is_layer ? bench_suite_layer(ctx, &o, &res)
             : is_gpu ? bench_suite_gpu(ctx, &o, &res)
                      : bench_suite_cpu(ctx, &o, &res);
    if (json && bench_results_write_json(&res, ctx, threads, json) != 0) {
        fprintf(stderr, "moefuse-bench: cannot write %s\n", json);
        rc = 1;
    } else if (json) {
        fprintf(stderr, "moefuse-bench: wrote %s\n", json);
    }
    bench_results_free(&res);
    mf_ctx_destroy(ctx);
    return rc;
}
