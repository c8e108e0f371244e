// Activations and GLUs of the quantized-weight shaders, with the
// reference's formulas (src/cpu/ref/actf.h) and common.glsl's sigmoid and
// erfc (the CPU vector kernels' polynomials). Included after common.glsl.

const float ACT_GELU_TANH_C1 = 1.5957691216057308;
const float ACT_GELU_TANH_C2 = 0.0713548162726;
const float ACT_GELU_ERF_C = -0.70710678118654752;

float act_silu(float x) { return x * sigmoid(x); }

float act_gelu_erf(float x)
{
    precise float z = x * ACT_GELU_ERF_C;
    float f = 0.5 * erfc_any(z);
    return x * f;
}

float act_gelu_tanh(float x)
{
    precise float t = x * x;
    t = t * ACT_GELU_TANH_C2;
    t = t + ACT_GELU_TANH_C1;
    precise float y = x * t;
    return x * sigmoid(y);
}

// mf_act: 0 none, 1 silu, 2 gelu (erf), 3 gelu_tanh
float act_apply(uint a, float x)
{
    if (a == 1u)
        return act_silu(x);
    if (a == 2u)
        return act_gelu_erf(x);
    if (a == 3u)
        return act_gelu_tanh(x);
    return x;
}

// mf_glu_kind: 0 swiglu, 1 geglu_tanh, 2 geglu_erf, 3 swiglu_oai
float glu_apply(uint kind, float g, float u, float limit, float alpha)
{
    if (kind == 1u)
        return act_gelu_tanh(g) * u;
    if (kind == 2u)
        return act_gelu_erf(g) * u;
    if (kind == 3u) {
        if (!is_nan(g) && g > limit)
            g = limit;
        if (!is_nan(u)) {
            if (u > limit)
                u = limit;
            else if (u < -limit)
                u = -limit;
        }
        precise float up = u + 1.0;
        precise float a = alpha * g;
        return up * (g * sigmoid(a));
    }
    return act_silu(g) * u;
}
