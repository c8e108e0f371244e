/* moefuse-profile: measures every op on every device of this machine, fits
 * the cost models, writes the placement cache the router reads, and reports
 * crossovers with a JSON results file and an SVG plot per op. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "profile_report.h"

static const char usage[] =
    "usage: moefuse-profile [--quick | --full] [options]\n"
    "\n"
    "Times each op (gating, combine, glu, dequant_act, qmv, moe_gate_up,\n"
    "moe_down_combine) over decode shapes on the CPU (the context's kernel\n"
    "set and threads) and on the GPU when the context has one, fits a cost\n"
    "model per op and device, and writes the placement cache that contexts\n"
    "with the same settings read at creation. Ends with a table per op\n"
    "(measured and predicted times, the crossover where the GPU starts to\n"
    "win, model errors), a JSON results file and an SVG plot per op.\n"
    "\n"
    "  --quick          main variants, T = 1..32 (the default; ~1.5 min)\n"
    "  --full           every format and model shape, T up to 128\n"
    "  --budget S       time budget in seconds (default 90, --full 900)\n"
    "  --op NAME        profile one op only (writes a cache only with --cache)\n"
    "  --json PATH      results file (default moefuse-profile.json)\n"
    "  --svg-dir DIR    where profile_<op>.svg go (default .)\n"
    "  --no-svg         write no plots\n"
    "  --cache PATH     placement cache to write (default: the context's,\n"
    "                   $XDG_CACHE_HOME/moefuse/placement.json)\n"
    "  --no-cache       do not write the placement cache\n"
    "  --threads N      worker threads (default: one per physical core)\n"
    "  --isa NAME       scalar, avx2, avx512 or neon (default: the best)\n"
    "  --gpu MODE       auto (default), off or required\n"
    "  -h, --help       this text\n"
    "\n"
    "A cache applies to contexts created with the same --threads, --isa and\n"
    "GPU. Ctrl-C stops early and keeps what was measured (the cache is\n"
    "written, marked incomplete); a second Ctrl-C quits at once. Exit status:\n"
    "0 done, 1 error, 2 usage, 130 interrupted.\n";

static volatile sig_atomic_t stop_flag;

static void on_sigint(int sig)
{
    (void)sig;
    stop_flag = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process */
}

static void fmt_time(char *b, size_t n, double s)
{
    if (s < 0) {
        snprintf(b, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    snprintf(b, n, "%ld:%02ld", t / 60, t % 60);
}

static void progress(void *user, int done, int total, double elapsed,
                     double eta, const char *what)
{
    (void)user;
    char e[48], r[48];
    fmt_time(e, sizeof e, elapsed);
    fmt_time(r, sizeof r, eta);
    int pct = total ? 100 * done / total : 100;
    fprintf(stderr, "\r\033[K[%3d/%3d] %3d%%  %s elapsed, ETA %s  %.60s",
            done, total, pct, e, r, what);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

static int arg_value(int argc, char **argv, int *i, const char **out)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "moefuse-profile: %s needs a value\n%s", argv[*i],
                usage);
        return -1;
    }
    *out = argv[++*i];
    return 0;
}

int main(int argc, char **argv)
{
    mf_ctx_options co = mf_ctx_options_default();
    mf_prof_opts po = {0};
    const char *json = "moefuse-profile.json", *svg = ".", *cache = NULL;
    int no_cache = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            po.full = 0;
        } else if (!strcmp(a, "--full")) {
            po.full = 1;
        } else if (!strcmp(a, "--no-svg")) {
            svg = NULL;
        } else if (!strcmp(a, "--no-cache")) {
            no_cache = 1;
        } else if (!strcmp(a, "--budget")) {
            if (arg_value(argc, argv, &i, &v))
                return 2;
            po.budget_s = strtod(v, &end);
            if (*end || !(po.budget_s > 0 && po.budget_s < 1e6)) {
                fprintf(stderr, "moefuse-profile: bad --budget %s\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--op")) {
            if (arg_value(argc, argv, &i, &po.only_op))
                return 2;
            if (mf_op_parse(po.only_op) < 0) {
                fprintf(stderr, "moefuse-profile: unknown op %s\n", po.only_op);
                return 2;
            }
        } else if (!strcmp(a, "--json")) {
            if (arg_value(argc, argv, &i, &json))
                return 2;
        } else if (!strcmp(a, "--svg-dir")) {
            if (arg_value(argc, argv, &i, &svg))
                return 2;
        } else if (!strcmp(a, "--cache")) {
            if (arg_value(argc, argv, &i, &cache))
                return 2;
            co.cache_path = cache;
        } else if (!strcmp(a, "--threads")) {
            if (arg_value(argc, argv, &i, &v))
                return 2;
            long t = strtol(v, &end, 10);
            if (*end || t < 1 || t > 1024) {
                fprintf(stderr, "moefuse-profile: bad --threads %s\n", v);
                return 2;
            }
            co.threads = (int)t;
        } else if (!strcmp(a, "--isa")) {
            if (arg_value(argc, argv, &i, &v))
                return 2;
            if (mf_isa_parse(v, &co.isa) != MF_OK) {
                fprintf(stderr, "moefuse-profile: bad --isa %s\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--gpu")) {
            if (arg_value(argc, argv, &i, &v))
                return 2;
            if (!strcmp(v, "auto"))
                co.gpu = MF_GPU_AUTO;
            else if (!strcmp(v, "off"))
                co.gpu = MF_GPU_DISABLED;
            else if (!strcmp(v, "required"))
                co.gpu = MF_GPU_REQUIRED;
            else {
                fprintf(stderr, "moefuse-profile: bad --gpu %s\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "moefuse-profile: unknown argument %s\n%s", a,
                    usage);
            return 2;
        }
    }

    /* A one-op profile would replace the whole machine's cache with a cache
     * of that op alone: written only where --cache asks for it. */
    if (po.only_op && !cache && !no_cache) {
        fprintf(stderr, "moefuse-profile: --op: not writing the placement cache "
                        "(it would replace the full profile); --cache PATH writes one\n");
        no_cache = 1;
    }
    /* the plot directory must exist before minutes of measuring, not after */
    if (svg) {
        struct stat sb;
        if (stat(svg, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "moefuse-profile: --svg-dir %s is not a directory\n", svg);
            return 2;
        }
    }
    mf_ctx *ctx = NULL;
    mf_status st = mf_ctx_create(&co, &ctx);
    if (st != MF_OK) {
        fprintf(stderr, "moefuse-profile: cannot create a context: %s\n",
                mf_status_str(st));
        return 1;
    }
    char *notes = NULL;
    size_t notes_len = 0;
    FILE *nf = open_memstream(&notes, &notes_len);
    po.notes = nf;
    po.stop = &stop_flag;
    if (isatty(STDERR_FILENO))
        po.progress = progress;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    mf_placement *p = NULL;
    st = mf_profile_run(ctx, &po, &p);
    signal(SIGINT, SIG_DFL);
    if (nf)
        fclose(nf);
    if (st != MF_OK) {
        fprintf(stderr, "moefuse-profile: %s\n", mf_status_str(st));
        free(notes);
        mf_ctx_destroy(ctx);
        return 1;
    }
    if (notes && *notes)
        fprintf(stderr, "%s", notes);

    prof_report_opts ro = {.json_path = json, .svg_dir = svg,
                           .cache_path = NULL, .cache_written = MF_ERR_IO,
                           .notes = notes};
    if (!no_cache) {
        ro.cache_path = cache ? cache : mf_ctx_cache_path(ctx);
        if (!ro.cache_path)
            fprintf(stderr, "moefuse-profile: no cache path (set "
                            "XDG_CACHE_HOME or HOME, or pass --cache)\n");
        else
            ro.cache_written = mf_placement_save(p, ro.cache_path);
    }
    int rc = prof_report(stdout, p, mf_ctx_gpu_status(ctx) == MF_OK, &ro);
    if (ro.cache_path) {
        if (ro.cache_written == MF_OK)
            printf("\nplacement cache written: %s%s\n", ro.cache_path,
                   p->complete ? "" : " (incomplete profile)");
        else
            fprintf(stderr, "moefuse-profile: cannot write %s: %s\n",
                    ro.cache_path, mf_status_str(ro.cache_written));
    }
    if (json)
        printf("results: %s\n", json);
    int interrupted = !p->complete;
    mf_placement_free(p);
    free(notes);
    mf_ctx_destroy(ctx);
    if (interrupted)
        return 130;
    return (rc || (ro.cache_path && ro.cache_written != MF_OK)) ? 1 : 0;
}
