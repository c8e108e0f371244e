/* Per-op LRU caches of recorded plans, so a repeated shape costs one submit
 * and no allocation or recording. */
#include <string.h>

#include "vk.h"

mf_vk_plan *mf_vk_plans_get(mf_vk *vk, mf_vk_plans *c, const void *key,
                            size_t key_bytes)
{
    if (key_bytes > MF_VK_PLAN_KEY)
        return NULL;
    c->clock++;
    int victim = 0;
    for (int i = 0; i < MF_VK_PLANS; i++) {
        mf_vk_plan *pl = &c->slot[i];
        if (c->used[i] && pl->key_bytes == key_bytes &&
            memcmp(pl->key, key, key_bytes) == 0) {
            pl->last_use = c->clock;
            return pl;
        }
        if (!c->used[i])
            victim = i;
        else if (c->used[victim] &&
                 pl->last_use < c->slot[victim].last_use)
            victim = i;
    }
    mf_vk_plan *pl = &c->slot[victim];
    mf_vk_plan_clear(vk, pl);
    c->used[victim] = 1;
    memcpy(pl->key, key, key_bytes);
    pl->key_bytes = key_bytes;
    pl->last_use = c->clock;
    return pl;
}

int mf_vk_plan_io(mf_vk *vk, mf_vk_plan *pl, size_t bytes, mf_vk_dir dir,
                  mf_status *st)
{
    if (pl->n_io >= MF_VK_PLAN_IO) {
        *st = MF_ERR_INVALID_ARG;
        return -1;
    }
    *st = mf_vk_io_create(vk, bytes, dir, &pl->io[pl->n_io]);
    if (*st != MF_OK)
        return -1;
    pl->bytes += pl->io[pl->n_io].dev.size + pl->io[pl->n_io].host.size;
    return pl->n_io++;
}

mf_status mf_vk_plan_scratch(mf_vk *vk, mf_vk_plan *pl, size_t bytes)
{
    if (pl->scratch.buf)
        return MF_ERR_INVALID_ARG;
    mf_status st = mf_vk_buf_create(vk, bytes, MF_VK_MEM_DEVICE, &pl->scratch);
    if (st == MF_OK)
        pl->bytes += pl->scratch.size;
    return st;
}

void mf_vk_plan_clear(mf_vk *vk, mf_vk_plan *pl)
{
    mf_vk_prog_free(vk, &pl->prog);
    for (int i = 0; i < pl->n_io; i++)
        mf_vk_io_destroy(vk, &pl->io[i]);
    mf_vk_buf_destroy(vk, &pl->scratch);
    memset(pl, 0, sizeof *pl);
}

static void drop(mf_vk *vk, mf_vk_plans *c, int i)
{
    if (c->last == &c->slot[i])
        c->last = NULL;
    mf_vk_plan_clear(vk, &c->slot[i]);
    c->used[i] = 0;
}

void mf_vk_plans_drop(mf_vk *vk, mf_vk_plans *c, mf_vk_plan *pl)
{
    drop(vk, c, (int)(pl - c->slot));
}

void mf_vk_plans_trim(mf_vk *vk, mf_vk_plans *c, mf_vk_plan *keep)
{
    for (;;) {
        size_t total = 0;
        int oldest = -1;
        for (int i = 0; i < MF_VK_PLANS; i++) {
            if (!c->used[i])
                continue;
            total += c->slot[i].bytes;
            if (&c->slot[i] != keep &&
                (oldest < 0 ||
                 c->slot[i].last_use < c->slot[oldest].last_use))
                oldest = i;
        }
        if (total <= c->budget)
            return;
        if (oldest < 0) {
            if (keep)
                drop(vk, c, (int)(keep - c->slot));
            return;
        }
        drop(vk, c, oldest);
    }
}

void mf_vk_plans_free(mf_vk *vk, mf_vk_plans *c)
{
    for (int i = 0; i < MF_VK_PLANS; i++)
        if (c->used[i])
            drop(vk, c, i);
    c->last = NULL;
}

mf_status mf_vk_plan_run(mf_vk *vk, mf_vk_plans *c, mf_vk_plan *pl)
{
    mf_status st = mf_vk_prog_run(vk, &pl->prog);
    if (st != MF_OK) {
        drop(vk, c, (int)(pl - c->slot));
        return st;
    }
    c->last = pl;
    return MF_OK;
}
