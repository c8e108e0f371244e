/* Route one token to 2 of 8 experts, then mix the experts' outputs. Build:
 *   cc gating_combine.c $(pkg-config --static --cflags --libs moefuse) */
#include <stdio.h>

#include <moefuse/moefuse.h>

int main(void)
{
    enum { E = 8, K = 2, D = 4 };
    const float logits[E] = {0.1f, 2.0f, -1.0f, 0.5f, 1.5f, 0.0f, -0.3f, 0.2f};
    const float x[K][D] = {{1, 2, 3, 4}, {10, 20, 30, 40}}; /* expert outputs */
    int32_t idx[K];
    float w[K], out[D];
    mf_ctx *ctx;
    mf_status st = mf_ctx_create(NULL, &ctx);
    if (st != MF_OK)
        return fprintf(stderr, "mf_ctx_create: %s\n", mf_status_str(st)), 1;
    mf_gating_desc g = {.mode = MF_GATING_SOFTMAX_TOPK, .n_experts = E, .k = K,
                        .renormalize = 1};
    mf_combine_desc c = {0};
    st = mf_gating(ctx, &g, logits, 1, idx, w);
    if (st == MF_OK)
        st = mf_combine(ctx, &c, 1, K, D, &x[0][0], w, NULL, out);
    mf_ctx_destroy(ctx);
    if (st != MF_OK)
        return fprintf(stderr, "moefuse: %s\n", mf_status_str(st)), 1;
    printf("experts %d %d, weights %.4f %.4f\n", idx[0], idx[1], w[0], w[1]);
    printf("out %.4f %.4f %.4f %.4f\n", out[0], out[1], out[2], out[3]);
    return 0;
}
