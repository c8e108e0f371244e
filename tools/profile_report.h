/* moefuse-profile's report: per op variant the measured and predicted times,
 * the crossover size where the GPU starts to win, model errors and regret;
 * a MoE-layer chain against its fixed placements; an SVG plot per op and a
 * JSON results file. */
#ifndef MF_TOOLS_PROFILE_REPORT_H
#define MF_TOOLS_PROFILE_REPORT_H

#include <stdio.h>

#include "src/dispatch/profile.h"

typedef struct prof_report_opts {
    const char *json_path;  /* NULL: no JSON file */
    const char *svg_dir;    /* NULL: no plots */
    const char *cache_path; /* where the cache went, or NULL */
    mf_status cache_written;
    const char *notes;      /* the profiler's remarks, or NULL */
} prof_report_opts;

/* Writes the tables to out and the files the options name. have_gpu: the
 * profiled context had a GPU. Returns 0, or -1 when a file could not be
 * written (said on stderr). */
int prof_report(FILE *out, const mf_placement *p, int have_gpu,
                const prof_report_opts *o);

#endif
