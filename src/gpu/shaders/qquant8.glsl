// The INT8 activation quantizer (MF_PREC_INT8, include/moefuse/ops.h):
// the CPU reference's block math (src/cpu/ref/quant.c), shared by the
// shaders that quantize activations in shared memory (qint8.glsl) and by
// i8quant.comp, which quantizes h once a chain step for moe_down.comp:
// the same function, so either way gives the same codes.

// a / b correctly rounded but for quotients within an ulp of a tie; r is
// the hardware's 1 / b.
float i8_div(float a, float b, float r)
{
    precise float q = a * r;
    precise float e = fma(-q, b, a);
    precise float o = fma(e, r, q);
    return o;
}

// Quantizes the 32 activations x: codes q0 (elements 0..15, byte j of word
// i = element 4 i + j) and q1 (16..31), meta = (d, s), sum = sum(q).
void i8_quantize(vec4 x[8], out uvec4 q0, out uvec4 q1, out vec2 meta,
                 out int sum)
{
    uint amax = 0u;
    for (uint i = 0u; i < 8u; i++) {
        uvec4 a = floatBitsToUint(x[i]) & 0x7fffffffu;
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    q0 = uvec4(0u);
    q1 = uvec4(0u);
    sum = 0;
    if (amax >= 0x7f800000u) {
        meta = vec2(uintBitsToFloat(0x7fc00000u));
        return;
    }
    // below 2^-64 the block is scaled by 2^64 (exact) so that 1 / d stays
    // finite; q is unchanged, d is scaled back with one rounding
    float sc = amax < 0x1f800000u ? 18446744073709551616.0 : 1.0;
    precise float am = uintBitsToFloat(amax) * sc;
    float d = i8_div(am, 127.0, 1.0 / 127.0);
    if (d == 0.0) {
        meta = vec2(0.0);
        return;
    }
    float r = 1.0 / d;
    uint w[8];
    for (uint i = 0u; i < 8u; i++) {
        uint word = 0u;
        for (uint c = 0u; c < 4u; c++) {
            precise float xs = x[i][c] * sc;
            float v = clamp(roundEven(i8_div(xs, d, r)), -127.0, 127.0);
            int q = int(v);
            sum += q;
            word |= uint(q & 255) << (8u * c);
        }
        w[i] = word;
    }
    q0 = uvec4(w[0], w[1], w[2], w[3]);
    q1 = uvec4(w[4], w[5], w[6], w[7]);
    precise float ds = d * (1.0 / sc);
    precise float s = ds * float(sum);
    meta = vec2(ds, s);
}
