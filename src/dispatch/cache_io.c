/* Placement cache files: default path, bounded reading, atomic writing
 * (temporary file in the same directory + fsync + rename), and loading into
 * a context at creation. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"

static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 1);
    if (s) {
        memcpy(s, a, na);
        memcpy(s + na, b, nb + 1);
    }
    return s;
}

char *mf_placement_default_path(void)
{
    const char *x = getenv("XDG_CACHE_HOME");
    if (x && x[0] == '/')
        return join(x, "/moefuse/placement.json");
    const char *h = getenv("HOME");
    if (h && h[0] == '/')
        return join(h, "/.cache/moefuse/placement.json");
    return NULL;
}

mf_status mf_placement_load(const char *path, const mf_fingerprint *expect,
                            mf_placement **out)
{
    if (!path || !out)
        return MF_ERR_INVALID_ARG;
    /* O_NONBLOCK: a FIFO planted at the path must not block the caller. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return MF_ERR_IO;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return MF_ERR_IO;
    }
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > MF_PC_MAX_FILE) {
        close(fd);
        return MF_ERR_CACHE_FORMAT;
    }
    size_t cap = (size_t)sb.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return MF_ERR_IO;
    }
    /* Read to the end, never past cap: a file that grew meanwhile shows as
     * len == cap and is rejected. */
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            close(fd);
            return MF_ERR_IO;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == cap)
            break;
    }
    close(fd);
    mf_status st = len == cap ? MF_ERR_CACHE_FORMAT
                              : mf_placement_parse(buf, len, expect, out);
    free(buf);
    return st == MF_ERR_OUT_OF_MEMORY ? MF_ERR_IO : st;
}

/* Creates every missing directory of dir (mode 0700, as XDG asks). */
static int make_dirs(char *dir)
{
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != 0)
            continue;
        char c = *p;
        *p = 0;
        int rc = mkdir(dir, 0700);
        *p = c;
        if (rc != 0 && errno != EEXIST)
            return -1;
        if (!c)
            return 0;
    }
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

mf_status mf_placement_save(const mf_placement *p, const char *path)
{
    if (!p || !path || !*path)
        return MF_ERR_INVALID_ARG;
    size_t len;
    char *text = mf_placement_to_json(p, &len);
    if (!text)
        return MF_ERR_OUT_OF_MEMORY;
    mf_status st = MF_ERR_IO;
    char *dir = join(path, "");
    char *tmp = NULL;
    if (!dir) {
        st = MF_ERR_OUT_OF_MEMORY;
        goto done;
    }
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = 0; /* the root directory */
    else if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    if (strcmp(dir, ".") != 0 && make_dirs(dir) != 0)
        goto done;
    tmp = join(path, ".tmp.XXXXXX");
    if (!tmp) {
        st = MF_ERR_OUT_OF_MEMORY;
        goto done;
    }
    int fd = mkstemp(tmp);
    if (fd < 0)
        goto done;
    int ok = write_all(fd, text, len) == 0 && fsync(fd) == 0;
    ok = (close(fd) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        goto done;
    }
    /* Make the rename itself durable. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    st = MF_OK;
done:
    free(tmp);
    free(dir);
    free(text);
    return st;
}

void mf_ctx_cache_attach(mf_ctx *ctx)
{
    ctx->placement_gen++;
    ctx->placement = NULL;
    if (!ctx->cache_path)
        ctx->cache_path = mf_placement_default_path();
    if (!ctx->cache_path) {
        ctx->cache_status = MF_ERR_IO;
        return;
    }
    mf_fingerprint fp;
    int known = mf_fingerprint_make(ctx, &fp) == MF_OK;
    mf_placement *p = NULL;
    mf_status st = mf_placement_load(ctx->cache_path, known ? &fp : NULL, &p);
    if (st == MF_OK && !known) {
        /* A readable cache, but this context's devices cannot be matched
         * against it. */
        mf_placement_free(p);
        p = NULL;
        st = MF_ERR_CACHE_MISMATCH;
    }
    ctx->placement = p;
    ctx->cache_status = st;
}

void mf_ctx_cache_detach(mf_ctx *ctx)
{
    mf_placement_free(ctx->placement);
    ctx->placement = NULL;
    ctx->placement_gen++;
}

mf_status mf_ctx_cache_status(const mf_ctx *ctx)
{
    return ctx ? ctx->cache_status : MF_ERR_INVALID_ARG;
}

const char *mf_ctx_cache_path(const mf_ctx *ctx)
{
    return ctx ? ctx->cache_path : NULL;
}
