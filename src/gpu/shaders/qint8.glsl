// MF_PREC_INT8 on the device (include/moefuse/ops.h): activation blocks
// quantized to int8 in the workgroup's shared memory, and integer dot
// products of the weight codes with them, four byte pairs per instruction
// (OpSDotKHR / OpSUDotKHR, SPV_KHR_integer_dot_product, packed 4x8 form;
// glslc has no GLSL built-in for them, so they are declared through
// GL_EXT_spirv_intrinsics). Included after qload.glsl by the shaders built
// with -DINT8; the host only creates those pipelines on devices that
// enabled VK_KHR_shader_integer_dot_product (vk->int_dot).
//
// The math is the CPU reference's (src/cpu/ref/quant.c): per block of 32,
// d = absmax / 127, q = x / d rounded to nearest even and clamped to +-127,
// s = d sum(q); an all-zero block d = s = 0, a block holding Inf or NaN
// d = s = NaN (every output it touches is NaN). Per block of a row:
//   Q4_0 / Q8_0:  acc = acc + (d_w d_x) isum
//   MLX:          acc = acc + ((scale d_x) isum + bias s_x)
// with isum the exact integer dot product (Q4_0: codes - 8). The quotients
// are refined to the correctly rounded ones (one Newton step on the
// hardware reciprocal, exact but for a quotient within an ulp of a rounding
// boundary), so the codes are the reference's in all but rare ties; the
// blocks are summed in another order than the CPU's. Both differences are
// within the documented INT8 bound.
#extension GL_EXT_spirv_intrinsics : require

spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"],
                  capabilities = [6019, 6018], id = 4450)
int i8_sdot(uint a, uint b, spirv_literal int packed);   // signed . signed

spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"],
                  capabilities = [6019, 6018], id = 4452)
int i8_sudot(uint a, uint b, spirv_literal int packed);  // signed . unsigned

#include "qquant8.glsl"

// Bits 0..15 of w (four 4-bit codes) as four bytes.
uint i8_spread4(uint w)
{
    uint l = w & 0xffffu;
    uint a = (l | (l << 8u)) & 0x00ff00ffu;
    return (a | (a << 4u)) & 0x0f0f0f0fu;
}

// Sums of four packed dot products, components by name (a loop indexing
// the vectors can leave them in local memory where a driver does not
// unroll it). Integer sums: any order gives the same value.
int i8_dot4(uvec4 a, uvec4 b)
{
    return (i8_sdot(a.x, b.x, 0) + i8_sdot(a.y, b.y, 0)) +
           (i8_sdot(a.z, b.z, 0) + i8_sdot(a.w, b.w, 0));
}

int i8_udot4(uvec4 sgn, uvec4 uns)
{
    return (i8_sudot(sgn.x, uns.x, 0) + i8_sudot(sgn.y, uns.y, 0)) +
           (i8_sudot(sgn.z, uns.z, 0) + i8_sudot(sgn.w, uns.w, 0));
}

// Integer dot product of a block's codes (raw uvec4s r0, r1 of format t)
// with the quantized activations (x0, x1, their sum xsum).
int i8_idot(uint t, uvec4 r0, uvec4 r1, uvec4 x0, uvec4 x1, int xsum)
{
    if (t == QT_Q4_0)
        return i8_dot4(r0 & 0x0f0f0f0fu, x0) +
               i8_dot4((r0 >> 4u) & 0x0f0f0f0fu, x1) - 8 * xsum;
    if (t == QT_Q8_0)
        return i8_dot4(r0, x0) + i8_dot4(r1, x1);
    if (t == QT_MLX_Q8)
        return i8_udot4(x0, r0) + i8_udot4(x1, r1);
    // MLX_Q4: word i holds elements 8 i .. 8 i + 7, lowest bits first
    uvec4 lo = uvec4(i8_spread4(r0.x), i8_spread4(r0.y), i8_spread4(r0.z),
                     i8_spread4(r0.w));
    uvec4 hi = uvec4(i8_spread4(r0.x >> 16u), i8_spread4(r0.y >> 16u),
                     i8_spread4(r0.z >> 16u), i8_spread4(r0.w >> 16u));
    return i8_dot4(uvec4(lo.x, hi.x, lo.y, hi.y), x0) +
           i8_dot4(uvec4(lo.z, hi.z, lo.w, hi.w), x1);
}

// acc plus one block's term: d the block's d (Q4_0/Q8_0), sc and bi the
// MLX group's scale and bias, meta the activation block's (d, s).
float i8_acc(uint t, int isum, float d, float sc, float bi, vec2 meta,
             float acc)
{
    float fi = float(isum);
    if (qf_has_d(t)) {
        precise float dd = d * meta.x;
        precise float tt = dd * fi;
        precise float o = acc + tt;
        return o;
    }
    precise float sd = sc * meta.x;
    precise float tt = sd * fi;
    precise float u = bi * meta.y;
    precise float o = acc + (tt + u);
    return o;
}

// The staged activation blocks of a workgroup (the including shader
// declares I8_ROWS, the rows staged at once, and I8_KB, blocks per row
// and chunk): codes, (d, s) and code sums.
shared uvec4 i8_q[2u * I8_ROWS * I8_KB];
shared vec2 i8_m[I8_ROWS * I8_KB];
shared int i8_s[I8_ROWS * I8_KB];

// Stores a quantized block (i8_quantize's outputs) into staged slot `slot`.
void i8_stage_q(uint slot, uvec4 q0, uvec4 q1, vec2 meta, int sum)
{
    i8_q[2u * slot] = q0;
    i8_q[2u * slot + 1u] = q1;
    i8_m[slot] = meta;
    i8_s[slot] = sum;
}

// Quantizes the 32 activations x into staged slot `slot`.
void i8_stage(uint slot, vec4 x[8])
{
    uvec4 q0, q1;
    vec2 meta;
    int sum;
    i8_quantize(x, q0, q1, meta, sum);
    i8_stage_q(slot, q0, q1, meta, sum);
}

// acc plus the product of a weight block (raw r0, r1; d, sc, bi as
// w_load gives them) of format t with staged slot `slot`.
float i8_block(uint t, uvec4 r0, uvec4 r1, float d, float sc, float bi,
               uint slot, float acc)
{
    int isum = i8_idot(t, r0, r1, i8_q[2u * slot], i8_q[2u * slot + 1u],
                       i8_s[slot]);
    return i8_acc(t, isum, d, sc, bi, i8_m[slot], acc);
}
