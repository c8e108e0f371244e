/* moefuse-report: prints the tables of a benchmark results file (any
 * moefuse-bench output, "capsule"), or two side by side. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/dispatch/json.h"

typedef struct capsule {
    char *text;
    mf_json_doc *doc;
    const mf_json *machine, *floor, *results;
} capsule;

static int load(const char *path, capsule *c)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "moefuse-report: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    c->text = malloc(cap);
    for (size_t r; c->text && (r = fread(c->text + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap && cap < MF_JSON_MAX_TEXT) {
            char *t = realloc(c->text, cap * 2);
            if (!t)
                break;
            c->text = t;
            cap *= 2;
        }
    }
    fclose(f);
    size_t off = 0;
    if (!c->text || mf_json_parse(c->text, n, &c->doc, &off) != 0) {
        fprintf(stderr, "moefuse-report: %s: not valid JSON (at byte %zu)\n", path, off);
        return -1;
    }
    const mf_json *root = mf_json_root(c->doc);
    c->machine = mf_json_get(root, "machine");
    c->floor = mf_json_get(root, "floor");
    c->results = mf_json_get(root, "results");
    if (!c->results || c->results->type != MF_JSON_ARRAY) {
        fprintf(stderr, "moefuse-report: %s: no \"results\" list\n", path);
        return -1;
    }
    return 0;
}

static void unload(capsule *c)
{
    mf_json_free(c->doc);
    free(c->text);
}

static const char *sget(const mf_json *o, const char *k)
{
    const char *s = "?";
    mf_json_strv(mf_json_get(o, k), &s);
    return s;
}

static double nget(const mf_json *o, const char *k)
{
    double v = NAN;
    mf_json_num(mf_json_get(o, k), &v);
    return v;
}

static void header(const char *path, const capsule *c)
{
    const mf_json *m = c->machine;
    printf("%s\n  cpu %s (%s), isa %s, %g threads, gpu %s\n  %s, git %s, %s\n",
           path, sget(m, "cpu"), sget(m, "arch"), sget(m, "isa"),
           nget(m, "threads"), sget(m, "gpu_name"), sget(m, "compiler"),
           sget(m, "git_sha"), sget(m, "date"));
    printf("  floor: triad %.1f GB/s", nget(c->floor, "triad_gbps"));
    double e = nget(c->floor, "empty_dispatch_us");
    if (!isnan(e))
        printf(", empty dispatch %.1f us, device copy %.0f GB/s", e,
               nget(c->floor, "device_copy_gbps"));
    printf("\n\n");
}

/* The unfused record of the same op and shape, for the speed-up column. */
static double unfused_median(const capsule *c, const char *op, const char *shape)
{
    for (size_t i = 0; i < c->results->len; i++) {
        const mf_json *r = &c->results->items[i];
        if (!strcmp(sget(r, "op"), op) && !strcmp(sget(r, "shape"), shape) &&
            !strcmp(sget(r, "impl"), "unfused"))
            return nget(r, "median_us");
    }
    return NAN;
}

static const mf_json *find(const capsule *c, const mf_json *like)
{
    for (size_t i = 0; i < c->results->len; i++) {
        const mf_json *r = &c->results->items[i];
        if (!strcmp(sget(r, "op"), sget(like, "op")) &&
            !strcmp(sget(r, "shape"), sget(like, "shape")) &&
            !strcmp(sget(r, "impl"), sget(like, "impl")))
            return r;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        FILE *f = argc >= 2 && argc <= 3 ? stdout : stderr;
        fprintf(f, "usage: moefuse-report RESULTS.json [OTHER.json]\n\n"
                   "Prints the tables of a moefuse-bench results file: per op, shape\n"
                   "and impl the median with p10/p90, GB/s, %% of the floor that\n"
                   "moefuse-bench set it against (ref: the 1-thread triad; gpu: the\n"
                   "device copy; others: the triad measured before the record) and\n"
                   "the speed-up over the unfused baseline. With two files, the\n"
                   "records both hold side by side with the ratio OTHER / RESULTS.\n");
        return argc >= 2 && argc <= 3 ? 0 : 2;
    }
    capsule a, b;
    if (load(argv[1], &a)) {
        unload(&a);
        return 1;
    }
    int two = argc == 3;
    if (two && load(argv[2], &b)) {
        unload(&a);
        unload(&b);
        return 1;
    }
    header(argv[1], &a);
    if (two)
        header(argv[2], &b);
    double floor = nget(a.floor, "triad_gbps");
    const char *last_op = "", *last_shape = "";
    for (size_t i = 0; i < a.results->len; i++) {
        const mf_json *r = &a.results->items[i];
        const char *op = sget(r, "op"), *shape = sget(r, "shape");
        if (strcmp(op, last_op) || strcmp(shape, last_shape)) {
            printf("%s  %s\n", op, shape);
            last_op = op;
            last_shape = shape;
        }
        double med = nget(r, "median_us"), gbps = nget(r, "gbps");
        /* the floor moefuse-bench printed the record against: the 1-thread
         * triad for ref, the device copy for GPU records of a run that
         * measured it, else the triad measured just before the record
         * (older files: the run's triad) */
        const char *impl = sget(r, "impl");
        double fl = !strcmp(impl, "ref")        ? nget(a.floor, "triad_1t_gbps")
                    : !strncmp(impl, "gpu", 3) ? nget(a.floor, "device_copy_gbps")
                                               : NAN;
        if (isnan(fl))
            fl = nget(r, "floor_gbps");
        if (isnan(fl))
            fl = floor;
        printf("  %-10s %11.3f us [%9.3f %9.3f]", impl, med,
               nget(r, "p10_us"), nget(r, "p90_us"));
        if (!isnan(gbps))
            printf(" %7.1f GB/s %5.1f%%", gbps, 100 * gbps / fl);
        else
            printf(" %20s", "");
        double un = unfused_median(&a, op, shape);
        if (!isnan(un) && strcmp(impl, "unfused"))
            printf("  %6.2fx unfused", un / med);
        else if (two)
            printf("  %15s", ""); /* keep the second file's column aligned */
        if (two) {
            const mf_json *o = find(&b, r);
            if (o)
                printf("  | %11.3f us  %5.2fx", nget(o, "median_us"),
                       nget(o, "median_us") / med);
            else
                printf("  | (absent)");
        }
        printf("\n");
    }
    unload(&a);
    if (two)
        unload(&b);
    return 0;
}
