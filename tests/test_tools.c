/* Tools: runs the built moefuse-doctor (its path comes in MOEFUSE_DOCTOR from
 * tests/meson.build; under a cross build through the emulator) and
 * checks its exit status, its JSON (well-formed, keys present, values
 * consistent with the library and the environment) and its text output. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "mf_config.h"

/* Runs the doctor with `args` (stderr discarded); returns its exit status
 * (-1 if it did not exit normally) and its stdout in *out (malloc'ed). */
static int run_doctor(const char *args, char **out)
{
    const char *doctor = getenv("MOEFUSE_DOCTOR");
    cr_assert(doctor && *doctor, "MOEFUSE_DOCTOR is not set");
    char a[512], cmd[8192];
    snprintf(a, sizeof a, "%s 2>/dev/null", args);
    mft_exe_command(cmd, sizeof cmd, doctor, a);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen failed");
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    for (size_t got; (got = fread(buf + n, 1, cap - 1 - n, p)) > 0;) {
        n += got;
        if (n == cap - 1) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
    }
    buf[n] = '\0';
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ------------------------------------------- a strict JSON syntax check -- */

static const char *ws(const char *s)
{
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')
        s++;
    return s;
}

static const char *value(const char *s, int depth);

static const char *string(const char *s)
{
    if (*s++ != '"')
        return NULL;
    for (; *s != '"'; s++) {
        if ((unsigned char)*s < 0x20)
            return NULL;
        if (*s == '\\') {
            s++;
            if (*s == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)s[i]))
                        return NULL;
                s += 4;
            } else if (!*s || !strchr("\"\\/bfnrt", *s)) {
                return NULL;
            }
        }
    }
    return s + 1;
}

static const char *number(const char *s)
{
    char *end;
    if (*s != '-' && !isdigit((unsigned char)*s))
        return NULL;
    strtod(s, &end);
    return end > s ? end : NULL;
}

static const char *members(const char *s, char close, int depth, int keyed)
{
    s = ws(s + 1);
    if (*s == close)
        return s + 1;
    for (;;) {
        if (keyed) {
            s = string(s);
            if (!s)
                return NULL;
            s = ws(s);
            if (*s++ != ':')
                return NULL;
        }
        s = value(ws(s), depth + 1);
        if (!s)
            return NULL;
        s = ws(s);
        if (*s == close)
            return s + 1;
        if (*s++ != ',')
            return NULL;
        s = ws(s);
    }
}

static const char *value(const char *s, int depth)
{
    if (depth > 32)
        return NULL;
    switch (*s) {
    case '{': return members(s, '}', depth, 1);
    case '[': return members(s, ']', depth, 0);
    case '"': return string(s);
    case 't': return strncmp(s, "true", 4) ? NULL : s + 4;
    case 'f': return strncmp(s, "false", 5) ? NULL : s + 5;
    case 'n': return strncmp(s, "null", 4) ? NULL : s + 4;
    default: return number(s);
    }
}

static int json_valid(const char *s)
{
    s = ws(s);
    if (*s != '{')
        return 0;
    s = value(s, 0);
    return s && *ws(s) == '\0';
}

/* The string value of the first "key": "..." in j (no escapes), in buf. */
static const char *str_of(const char *j, const char *key, char *buf,
                          size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(j, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    size_t n = strcspn(p, "\"");
    if (n >= cap)
        return NULL;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

static int has_key(const char *j, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    return strstr(j, pat) != NULL;
}

/* --------------------------------------------------------------- tests -- */

Test(tools, doctor_help)
{
    char *out;
    cr_expect_eq(run_doctor("--help", &out), 0);
    cr_expect(strstr(out, "usage: moefuse-doctor") != NULL, "%s", out);
    cr_expect(strstr(out, "--json") != NULL);
    free(out);
}

Test(tools, doctor_bad_flags)
{
    const char *bad[] = {"--bogus", "-x", "json", "--json --nope"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out;
        int st = run_doctor(bad[i], &out);
        cr_expect(st != 0 && st != -1, "'%s' exited %d", bad[i], st);
        free(out);
    }
}

Test(tools, doctor_json)
{
    char dir[] = "/tmp/mft_doctor_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    setenv("XDG_CACHE_HOME", dir, 1);
    unsetenv("MOEFUSE_ISA");
    char *j;
    cr_assert_eq(run_doctor("--json", &j), 0);
    cr_assert(json_valid(j), "not valid JSON:\n%s", j);
    const char *keys[] = {
        "version", "build", "compiler", "cpu", "model", "arch",
        "physical_cores", "logical_cpus", "l1d_bytes", "l2_bytes", "l3_bytes",
        "features", "kernel_sets", "best_kernel_set", "context", "kernel_set",
        "moefuse_isa", "threads", "gpu", "gpu_status", "gpu_device", "vulkan",
        "devices",
        "placement_cache", "path", "exists", "state"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cr_expect(has_key(j, keys[i]), "key \"%s\" missing:\n%s", keys[i], j);

    char buf[4096];
    cr_expect_str_eq(str_of(j, "version", buf, sizeof buf), mf_version());
    mf_cpu_info ci;
    cr_assert_eq(mf_cpu_info_get(&ci), MF_OK);
    cr_expect_str_eq(str_of(j, "arch", buf, sizeof buf), ci.arch);
    cr_expect_str_eq(str_of(j, "best_kernel_set", buf, sizeof buf),
                     mf_isa_name(ci.isa_best));
    /* without MOEFUSE_ISA the context takes the best set */
    cr_expect_str_eq(str_of(j, "kernel_set", buf, sizeof buf),
                     mf_isa_name(ci.isa_best));
    for (int i = MF_ISA_SCALAR; i < MF_ISA_COUNT_; i++) {
        char q[32];
        snprintf(q, sizeof q, "\"%s\"", mf_isa_name((mf_isa)i));
        const char *sets = strstr(j, "\"kernel_sets\":");
        cr_assert_not_null(sets);
        const char *in = strstr(sets, q);
        int listed = in && in < strchr(sets, ']');
        cr_expect_eq(listed, ci.isa_available[i], "kernel set %s", q);
    }
    /* the context's GPU is described exactly when it is in use, and it is
     * one of the devices the loader lists */
    const char *dev = strstr(j, "\"gpu_device\": ");
    cr_assert_not_null(dev);
    dev += strlen("\"gpu_device\": ");
    if (strcmp(str_of(j, "gpu", buf, sizeof buf), "in use") == 0) {
        cr_expect_eq(*dev, '{', "gpu in use but no gpu_device:\n%s", j);
        const char *uuid = str_of(dev, "uuid", buf, sizeof buf);
        cr_assert_not_null(uuid);
        const char *list = strstr(j, "\"devices\":");
        cr_assert_not_null(list);
        cr_expect(strstr(list, uuid) != NULL,
                  "gpu_device %s is not among the devices:\n%s", uuid, j);
    } else {
        cr_expect_eq(strncmp(dev, "null", 4), 0, "%s", j);
    }

    char want[4200];
    snprintf(want, sizeof want, "%s/moefuse/placement.json", dir);
    cr_expect_str_eq(str_of(j, "path", buf, sizeof buf), want);
    cr_expect_str_eq(str_of(j, "state", buf, sizeof buf), "unprofiled");
    cr_expect(strstr(j, "\"exists\": false") != NULL);
    free(j);
    rmdir(dir);
}

Test(tools, doctor_placement_cache_corrupt)
{
    char dir[] = "/tmp/mft_doctor_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char sub[4200], file[4300];
    snprintf(sub, sizeof sub, "%s/moefuse", dir);
    snprintf(file, sizeof file, "%s/placement.json", sub);
    cr_assert_eq(mkdir(sub, 0700), 0);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("{\"this is\": not a placement cache", f);
    fclose(f);
    setenv("XDG_CACHE_HOME", dir, 1);
    char *j;
    cr_assert_eq(run_doctor("--json --no-gpu", &j), 0);
    cr_assert(json_valid(j), "not valid JSON:\n%s", j);
    char buf[64];
    cr_expect_str_eq(str_of(j, "state", buf, sizeof buf), "corrupt");
    cr_expect(strstr(j, "\"exists\": true") != NULL);
    free(j);
    remove(file);
    rmdir(sub);
    rmdir(dir);
}

Test(tools, doctor_isa_from_environment)
{
    setenv("MOEFUSE_ISA", "scalar", 1);
    char *j, buf[64];
    cr_assert_eq(run_doctor("--json --no-gpu", &j), 0);
    cr_assert(json_valid(j), "not valid JSON:\n%s", j);
    cr_expect_str_eq(str_of(j, "kernel_set", buf, sizeof buf), "scalar");
    cr_expect_str_eq(str_of(j, "moefuse_isa", buf, sizeof buf), "scalar");
    cr_expect_str_eq(str_of(j, "gpu", buf, sizeof buf),
                     MF_HAVE_VULKAN ? "disabled" : "not built");
    free(j);

    /* an unparsable MOEFUSE_ISA makes context creation fail: exit 1 */
    setenv("MOEFUSE_ISA", "sse9", 1);
    cr_expect_eq(run_doctor("--json", &j), 1);
    free(j);
}

Test(tools, doctor_text)
{
    char *t;
    cr_assert_eq(run_doctor("", &t), 0);
    const char *parts[] = {"moefuse ", "CPU", "kernel sets", "Context",
                           "threads", "Vulkan devices", "Placement cache",
                           "path"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        cr_expect(strstr(t, parts[i]) != NULL, "\"%s\" missing:\n%s",
                  parts[i], t);
    free(t);
}
