// Helpers shared by the shaders (included; compiled into each module).
//
// Vulkan leaves some float behaviour to the device: FMA may or may not be
// fused, division is accurate to 2.5 ulp, denormals may be flushed, and
// NaN/Inf may be assumed absent by the compiler. So:
//  - NaN, Inf and tiny values are classified from the bits, never with
//    isnan()/isinf() or comparisons;
//  - results the reference defines exactly (sums, products, f16/bf16
//    conversions, selection keys) come from operations Vulkan rounds
//    correctly (add, multiply) or from integer arithmetic, with `precise`
//    so no multiply-add is contracted;
//  - the math functions follow the CPU vector kernels (src/cpu/avx512/vmath.h)
//    with the same polynomials, with the FMA-dependent steps replaced by
//    exact two-product splitting and a correction step for division.

const uint F_SIGN = 0x80000000u;
const uint F_ABS = 0x7fffffffu;
const uint F_INF = 0x7f800000u;
#define NEG_INF uintBitsToFloat(0xff800000u)

bool is_nan(float x) { return (floatBitsToUint(x) & F_ABS) > F_INF; }
bool is_inf(float x) { return (floatBitsToUint(x) & F_ABS) == F_INF; }
bool is_pinf(float x) { return floatBitsToUint(x) == F_INF; }
bool is_ninf(float x) { return floatBitsToUint(x) == 0xff800000u; }

// NaN -> -Inf (the gating rule).
float canon(float x) { return is_nan(x) ? NEG_INF : x; }

// A uint that orders like the float (-0 below +0; NaN not expected).
uint fkey(float x)
{
    uint u = floatBitsToUint(x);
    return (u & F_SIGN) != 0u ? ~u : (u | F_SIGN);
}

float key_float(uint k)
{
    return uintBitsToFloat((k & F_SIGN) != 0u ? (k & F_ABS) : ~k);
}

// ---- exact float add and multiply, denormals included -------------------

// x * 2^64 for |x| < 2^-60 (denormals too), from the bits: exact.
float scale_up64(float x)
{
    uint u = floatBitsToUint(x);
    uint a = u & F_ABS;
    float r;
    if (a >= 0x00800000u)
        r = uintBitsToFloat(a + (64u << 23));
    else
        r = float(a) * uintBitsToFloat(0x15000000u); // m * 2^-149 * 2^64 = m * 2^-85
    return (u & F_SIGN) != 0u ? -r : r;
}

// The float x * 2^-64 when it is exactly representable (bits built by hand
// so a denormal result is not flushed).
uint scale_down64_bits(float x)
{
    uint u = floatBitsToUint(x);
    uint s = u & F_SIGN, a = u & F_ABS;
    if (a == 0u)
        return s;
    int e = int(a >> 23);
    if (e > 64)
        return s | (a - (64u << 23));
    // denormal result: mantissa with its implicit bit, shifted (exact)
    uint m = (a & 0x7fffffu) | 0x800000u;
    return s | (m >> uint(65 - e));
}

// Bits of fl(a + b) exactly as IEEE round-to-nearest-even computes it, also
// when the result is denormal on a device that flushes denormals.
uint add_bits(float a, float b)
{
    uint ua = floatBitsToUint(a) & F_ABS, ub = floatBitsToUint(b) & F_ABS;
    if (ua > F_INF || ub > F_INF)
        return 0x7fc00000u;
    if (ua == F_INF || ub == F_INF) {
        if (ua == F_INF && ub == F_INF &&
            floatBitsToUint(a) != floatBitsToUint(b))
            return 0x7fc00000u;
        return floatBitsToUint(ua == F_INF ? a : b);
    }
    // With the larger magnitude >= 2^-100 the hardware sum is exact-rounded
    // and cannot land among denormals; a flushed denormal operand is below
    // half an ulp of the other and does not change the rounding.
    if (max(ua, ub) >= 0x0d800000u) {
        precise float r = a + b;
        return floatBitsToUint(r);
    }
    if (ua == 0u && ub == 0u) {
        uint sa = floatBitsToUint(a), sb = floatBitsToUint(b);
        return sa & sb & F_SIGN; // -0 only if both are -0
    }
    // Both tiny: the sum is exact after scaling by 2^64, and exact again
    // after scaling back (a multiple of 2^-149 below 2^-99).
    precise float r = scale_up64(a) + scale_up64(b);
    if (r == 0.0)
        return 0u;
    return scale_down64_bits(r);
}

float add_exact(float a, float b) { return uintBitsToFloat(add_bits(a, b)); }

// 64-bit helpers on (hi, lo) pairs.
uvec2 shr64(uvec2 v, uint s)
{
    if (s == 0u)
        return v;
    if (s >= 64u)
        return uvec2(0u);
    if (s >= 32u)
        return uvec2(0u, v.x >> (s - 32u));
    return uvec2(v.x >> s, (v.y >> s) | (v.x << (32u - s)));
}

// Bits of fl(a * b), round to nearest even, denormal results and operands
// computed in integer arithmetic. For finite a, b.
uint mul_bits_soft(float a, float b)
{
    uint ua = floatBitsToUint(a), ub = floatBitsToUint(b);
    uint sign = (ua ^ ub) & F_SIGN;
    uint ea = (ua >> 23) & 255u, eb = (ub >> 23) & 255u;
    uint ma = ua & 0x7fffffu, mb = ub & 0x7fffffu;
    if (ea != 0u) ma |= 0x800000u; else ea = 1u;
    if (eb != 0u) mb |= 0x800000u; else eb = 1u;
    if (ma == 0u || mb == 0u)
        return sign;
    uint phi, plo;
    umulExtended(ma, mb, phi, plo);
    // value = P * 2^(ea + eb - 300); leading bit position of P:
    int nb = phi != 0u ? findMSB(phi) + 33 : findMSB(plo) + 1;
    int e0 = int(ea) + int(eb) - 300;   // exponent of P's bit 0
    int top = nb - 1 + e0;              // exponent of the leading bit
    int ulpe = top >= -126 ? top - 23 : -149;
    if (ulpe - e0 > 200)
        return sign;
    int s = ulpe - e0;                  // bits of P to drop
    uint q;
    if (s <= 0) {
        q = plo << uint(-s);            // fits: the result has <= 24 bits
    } else {
        uvec2 p = uvec2(phi, plo);
        q = shr64(p, uint(s)).y;        // < 2^25
        // the dropped bits (P mod 2^s) against half of 2^s
        uvec2 rem, hf;
        if (s < 32) {
            rem = uvec2(0u, plo & ((1u << uint(s)) - 1u));
            hf = uvec2(0u, 1u << uint(s - 1));
        } else if (s == 32) {
            rem = uvec2(0u, plo);
            hf = uvec2(0u, 0x80000000u);
        } else if (s < 64) {
            rem = uvec2(phi & ((1u << uint(s - 32)) - 1u), plo);
            hf = uvec2(1u << uint(s - 33), 0u);
        } else {
            rem = p;                    // P < 2^48 < half
            hf = uvec2(0xffffffffu);
        }
        bool gt = rem.x > hf.x || (rem.x == hf.x && rem.y > hf.y);
        bool eq = rem.x == hf.x && rem.y == hf.y;
        if (gt || (eq && (q & 1u) != 0u))
            q += 1u;
    }
    if (ulpe == -149)
        return sign | q;                // denormal grid (q = 2^23: min normal)
    if (ulpe + 23 + 127 >= 255)
        return sign | F_INF;
    return sign | (uint(ulpe + 23 + 127 - 1) << 23) + q;
}

// Bits of fl(a * b) exactly as IEEE computes it (denormals included).
uint mul_bits(float a, float b)
{
    uint ua = floatBitsToUint(a) & F_ABS, ub = floatBitsToUint(b) & F_ABS;
    if (ua > F_INF || ub > F_INF)
        return 0x7fc00000u;
    uint sign = (floatBitsToUint(a) ^ floatBitsToUint(b)) & F_SIGN;
    if (ua == F_INF || ub == F_INF)
        return (ua == 0u || ub == 0u) ? 0x7fc00000u : (sign | F_INF);
    int ea = int(ua >> 23), eb = int(ub >> 23);
    // Both normal and the product surely normal: the hardware rounds it.
    if (ea != 0 && eb != 0 && ea + eb - 254 >= -125) {
        precise float r = a * b;
        return floatBitsToUint(r);
    }
    return mul_bits_soft(a, b);
}

float mul_exact(float a, float b) { return uintBitsToFloat(mul_bits(a, b)); }

// ---- division and two-products -----------------------------------------

// a * b = p + e exactly (Dekker), for |a|, |b| < 2^100 and products away
// from underflow.
void two_prod(float a, float b, out float p, out float e)
{
    precise float pp = a * b;
    precise float ca = 4097.0 * a;
    precise float ah = ca - (ca - a);
    precise float al = a - ah;
    precise float cb = 4097.0 * b;
    precise float bh = cb - (cb - b);
    precise float bl = b - bh;
    precise float ee = ((ah * bh - pp) + ah * bl + al * bh) + al * bl;
    p = pp;
    e = ee;
}

// a / b within ~0.5 ulp (one correction step on the device division) when
// a, b and the quotient lie in [2^-100, 2^100]; otherwise the device's
// division.
float div_acc(float a, float b)
{
    float q = a / b;
    uint uq = floatBitsToUint(q) & F_ABS;
    uint ua = floatBitsToUint(a) & F_ABS, ub = floatBitsToUint(b) & F_ABS;
    // The correction needs the splitting of q and b to stay finite and
    // its low product away from underflow.
    if (uq < 0x0d800000u || uq >= 0x71800000u || ua < 0x0d800000u ||
        ua >= 0x71800000u || ub < 0x0d800000u || ub >= 0x71800000u)
        return q;
    float p, e;
    two_prod(q, b, p, e);
    precise float r = (a - p) - e;
    precise float qc = q + r / b;
    return qc;
}

// ---- TwoSum compensated sums ---------------------------------------------

// s + e = a + b exactly (Knuth TwoSum).
void two_sum(float a, float b, out float s, out float e)
{
    precise float ss = a + b;
    precise float bb = ss - a;
    precise float ee = (a - (ss - bb)) + (b - bb);
    s = ss;
    e = ee;
}

// Adds (b_hi, b_lo) into (a_hi, a_lo).
vec2 sum2(vec2 a, vec2 b)
{
    float s, e;
    two_sum(a.x, b.x, s, e);
    precise float lo = e + (a.y + b.y);
    float s2, e2;
    two_sum(s, lo, s2, e2);
    return vec2(s2, e2);
}

// ---- elementary functions (accuracy as the CPU vector kernels) ----------

// exp(x) * 2^k for x <= 89 (NaN and larger not expected: callers clamp)
// and 0 <= k <= 64; the scaling is folded into the power of two, so
// exp_core(x, 64) keeps exp(x) of x down to -104 normal and exact to the
// polynomial's accuracy on devices that flush subnormals.
float exp_core(float x, int k)
{
    x = max(x, -104.0);
    float n = roundEven(x * 1.44269504088896341);
    precise float r = x - n * 0.693145751953125;  // n * ln2_hi exact
    r = r - n * 1.428606820309417232e-6;
    float p = 1.3941108e-3;
    p = p * r + 8.3751259e-3;
    p = p * r + 4.1666351e-2;
    p = p * r + 1.6666415e-1;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^(n + k) as two exact power-of-two factors (n in [-150, 128]); the
    // second product rounds once (on devices that keep subnormals).
    int ni = int(n) + k;
    int n1 = ni >> 1, n2 = ni - n1;
    float s1 = uintBitsToFloat(uint(n1 + 127) << 23);
    float s2 = uintBitsToFloat(uint(n2 + 127) << 23);
    return (p * s1) * s2;
}

// exp(x), x <= 89.
float exp_le89(float x) { return exp_core(x, 0); }

// exp(x) for any x: NaN -> NaN, +Inf -> +Inf, -Inf -> 0.
float exp_any(float x)
{
    if (is_nan(x))
        return x;
    return exp_le89(min(x, 89.0));
}

// sigmoid(x) = 1 / (1 + exp(-x)) via e = exp(-|x|): x >= 0: 1 / (1 + e);
// x < 0: e / (1 + e). NaN -> NaN, +Inf -> 1, -Inf -> 0.
float sigmoid(float x)
{
    if (is_nan(x))
        return x;
    float e = exp_le89(-abs(x));
    float r = div_acc(1.0, 1.0 + e);
    return x < 0.0 ? r * e : r;
}

// erfc(a) * 2^k for a >= 0.5 (tail form of the CPU kernels), k as in
// exp_core.
float erfc_tail_k(float a, int k)
{
    a = min(a, 10.1);
    float t = div_acc(1.0, a * 0.5 + 1.0);
    float g = -7.728861272e-02;
    g = g * t + 3.634350896e-01;
    g = g * t + -6.333355904e-01;
    g = g * t + 4.296478331e-01;
    g = g * t + -1.232236400e-01;
    g = g * t + 2.417527884e-01;
    g = g * t + 2.331139892e-01;
    g = g * t + 2.839283049e-01;
    g = g * t + 2.819534838e-01;
    g = g * t + 4.770354735e-06;
    float s, lo;
    two_prod(a, a, s, lo);
    float e = exp_core(-s, k);
    e = e - e * lo;
    return e * g;
}

float erfc_tail(float a) { return erfc_tail_k(a, 0); }

float erf_small(float x)
{
    float z = x * x;
    float p = 4.719082732e-03;
    p = p * z + -2.675773203e-02;
    p = p * z + 1.128283143e-01;
    p = p * z + -3.761260808e-01;
    p = p * z + 1.128379107e+00;
    return x * p;
}

// erfc(x) for any x (NaN -> NaN, -Inf -> 2, +Inf -> 0).
float erfc_any(float x)
{
    if (is_nan(x))
        return x;
    float ax = abs(x);
    if (ax < 0.5)
        return 1.0 - erf_small(x);
    float t = erfc_tail(ax);
    return (floatBitsToUint(x) & F_SIGN) != 0u ? 2.0 - t : t;
}

// ---- gate products ----------------------------------------------------------
// The reference forms (g * f) * u in f32 with f a factor (sigmoid, 0.5 erfc)
// that can be subnormal, as can g, u and g * f. A device that flushes
// subnormals would turn such a product times an infinite operand into NaN
// (0 * Inf) where the CPU gives +-Inf, so the products are formed with
// mul_exact (IEEE products, subnormals included) and a factor below the
// normal range is computed scaled by 2^64 and rounded as f32 rounds it.

// v (a value scaled by 2^64) rounded as f32 rounds v * 2^-64: to the
// subnormal grid 2^-149 below 2^-126. Still scaled.
float sub_round64(float v)
{
    if (abs(v) >= uintBitsToFloat(0x20800000u))   // 2^-62
        return v;
    return roundEven(v * uintBitsToFloat(0x6a000000u)) *   // 2^85
           uintBitsToFloat(0x15000000u);                   // 2^-85
}

// The f32 value (subnormal included) of a factor given scaled by 2^64.
float factor_from_scaled(float fs)
{
    if (is_nan(fs))
        return fs;
    return uintBitsToFloat(scale_down64_bits(sub_round64(fs)));
}

// (g * sigmoid(a)) * u as the CPU rounds it.
float gate_sigmoid(float g, float a, float u)
{
    float f;
    if (is_nan(a) || a >= -80.0)
        f = sigmoid(a);
    else  // sigmoid(a) = e / (1 + e) rounds to e = exp(a) < 2^-115
        f = factor_from_scaled(exp_core(a, 64));
    return mul_exact(mul_exact(g, f), u);
}

// (g * (0.5 erfc(z))) * u as the CPU rounds it (GELU, erf form).
float gate_erfc(float g, float z, float u)
{
    float f;
    if (is_nan(z) || z < 9.0)
        f = 0.5 * erfc_any(z);
    else
        f = factor_from_scaled(0.5 * erfc_tail_k(z, 64));
    return mul_exact(mul_exact(g, f), u);
}

// ---- f16 / bf16 ------------------------------------------------------------

float f16_to_f32(uint h)
{
    uint sign = (h & 0x8000u) << 16;
    uint e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0u)
        return uintBitsToFloat(floatBitsToUint(float(m) * (1.0 / 16777216.0)) | sign);
    if (e == 31u)
        return uintBitsToFloat(sign | F_INF | (m << 13));
    return uintBitsToFloat(sign | ((e + 112u) << 23) | (m << 13));
}

// Round to nearest even, bit-identical to mf_f32_to_f16 (integer only).
uint f32_to_f16(float f)
{
    uint x = floatBitsToUint(f);
    uint sign = (x >> 16) & 0x8000u;
    uint ax = x & F_ABS;
    if (ax >= F_INF)
        return sign | 0x7c00u | (ax > F_INF ? 0x200u | ((ax >> 13) & 0x3ffu) : 0u);
    if (ax >= 0x477ff000u)
        return sign | 0x7c00u;
    if (ax < 0x38800000u) {
        // value * 2^24 rounded to an integer, to nearest even
        uint e = ax >> 23;
        uint m = (ax & 0x7fffffu) | (e != 0u ? 0x800000u : 0u);
        if (e == 0u) e = 1u;
        uint s = 126u - e;              // >= 14
        if (s > 24u)
            return sign;
        uint q = m >> s, rem = m & ((1u << s) - 1u), hf = 1u << (s - 1u);
        if (rem > hf || (rem == hf && (q & 1u) != 0u))
            q += 1u;
        return sign | q;
    }
    uint odd = (ax >> 13) & 1u;
    ax += 0xc8000fffu + odd;
    return sign | (ax >> 13);
}

float bf16_to_f32(uint h) { return uintBitsToFloat(h << 16); }

uint f32_to_bf16(float f)
{
    uint x = floatBitsToUint(f);
    if ((x & F_ABS) > F_INF)
        return (x >> 16) | 0x40u;
    x += 0x7fffu + ((x >> 16) & 1u);
    return x >> 16;
}
