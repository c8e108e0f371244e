// Weight formats as the device holds them (src/gpu/wcache.c repacks them
// once, at upload). Included by the quantized-weight shaders.
//
// A resident tensor is one buffer, bound as uvec4[]:
//  - codes: every row is nb = ceil(K / 32) blocks of 32 elements, row after
//    row (no row stride): block (r, b) is uvec4s [(r nb + b) V, + V) with
//    V = qf_vecs(type):
//      Q4_0    1: the block's 16 qs bytes (element j = low nibble of byte
//                 j, element j + 16 = its high nibble)
//      Q8_0    2: the 32 int8 codes
//      MLX_Q4  1: 4 code words, 8 elements each, lowest bits first
//      MLX_Q8  2: 8 code words, 4 elements each
//      F16/BF16 4, F32 8: the values; rows padded with zeros to 32 elements
//  - at word soff: Q4_0/Q8_0 the f16 d of every block, two per word (block
//    i in half i & 1 of word i / 2); MLX the scales [rows, K / GS] as
//    stored (two 16-bit values per word, or one f32 per word)
//  - at word boff: MLX biases, as the scales.
//
// Decoding gives a block as 8 vec4 (elements 4i .. 4i + 3 in w[i]).
// Q4_0 and Q8_0 give the integer codes (q - 8, q) and their d apart: the
// product d (q - 8) of an f16 and a small integer is exact in f32, so
// d * sum((q - 8) x) rounds like sum(d (q - 8) x) does. MLX gives
// round(round(scale q) + bias) per element (`precise`: no fused multiply-
// add), float types their values: every element is the f32 value the
// format defines (src/cpu/ref/quant.c). F16 weights go through
// unpackHalf2x16 (the hardware conversion, exact where it keeps f16
// subnormals, as the devices in use do); the exact integer decode is kept
// for scales and for dequant's element path.
//
// Integer to float by magic numbers: 0x4B000000 | u is the float 2^23 + u
// for u < 2^23, so subtracting 2^23 (+ 8 for Q4_0, + 128 for Q8_0's offset
// bytes) is exact and costs one add instead of a conversion.

const uint QT_F32 = 0u, QT_F16 = 1u, QT_BF16 = 2u, QT_Q4_0 = 3u,
           QT_Q8_0 = 4u, QT_MLX_Q4 = 5u, QT_MLX_Q8 = 6u;

// uvec4s per block of 32 elements.
uint qf_vecs(uint t)
{
    return t == QT_F32 ? 8u
         : (t == QT_F16 || t == QT_BF16) ? 4u
         : (t == QT_Q4_0 || t == QT_MLX_Q4) ? 1u : 2u;
}

bool qf_is_mlx(uint t) { return t == QT_MLX_Q4 || t == QT_MLX_Q8; }
bool qf_has_d(uint t) { return t == QT_Q4_0 || t == QT_Q8_0; }

const float QF_MAGIC = 8388608.0;  // 2^23

vec4 qf_nib(uint w, uvec4 sh, float off)
{
    return uintBitsToFloat(((uvec4(w) >> sh) & 0xfu) | 0x4B000000u) - (QF_MAGIC + off);
}

// The four bytes of w (each below 2^23 - off) as floats minus off. Byte
// extracts ORed into the magic number: one byte permute each where the
// compiler has one (NVIDIA's PRMT), where a nibble extract takes a shift
// and a mask.
vec4 qf_bytes(uint w, float off)
{
    return uintBitsToFloat(((uvec4(w) >> uvec4(0u, 8u, 16u, 24u)) & 0xffu) | 0x4B000000u) - (QF_MAGIC + off);
}

vec4 qf_ubyte(uint w) { return qf_bytes(w, 0.0); }

// (each byte's sign bit flipped: q + 128, then 128 off)
vec4 qf_sbyte(uint w) { return qf_bytes(w ^ 0x80808080u, 128.0); }

// A 16-bit float (F16 or BF16 per st) to f32, exact (subnormal f16 too).
float qf_half(uint h, uint st)
{
    return st == QT_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

vec4 qf_half4(uint w0, uint w1, uint st)
{
    return vec4(qf_half(w0 & 0xffffu, st), qf_half(w0 >> 16u, st),
                qf_half(w1 & 0xffffu, st), qf_half(w1 >> 16u, st));
}

// The block's elements from its raw uvec4s. For Q4_0/Q8_0 the codes
// (q - 8, q); scale and bias are the MLX group's (unused otherwise).
void qf_decode(uint t, uint st, uvec4 raw[8], float scale, float bias,
               out vec4 w[8])
{
    if (t == QT_Q4_0) {
        // element 4 i + j: the low nibble of byte j of word i; 16 + 4 i + j
        // its high nibble (both nibble sets masked once a word)
        uvec4 lo = raw[0] & 0x0f0f0f0fu, hi = (raw[0] >> 4u) & 0x0f0f0f0fu;
        w[0] = qf_bytes(lo.x, 8.0);
        w[1] = qf_bytes(lo.y, 8.0);
        w[2] = qf_bytes(lo.z, 8.0);
        w[3] = qf_bytes(lo.w, 8.0);
        w[4] = qf_bytes(hi.x, 8.0);
        w[5] = qf_bytes(hi.y, 8.0);
        w[6] = qf_bytes(hi.z, 8.0);
        w[7] = qf_bytes(hi.w, 8.0);
    } else if (t == QT_Q8_0) {
        for (uint i = 0u; i < 8u; i++)
            w[i] = qf_sbyte(raw[i >> 2u][i & 3u]);
    } else if (t == QT_MLX_Q4) {
        for (uint i = 0u; i < 4u; i++) {
            precise vec4 p0 = qf_nib(raw[0][i], uvec4(0u, 4u, 8u, 12u), 0.0) * scale;
            precise vec4 p1 = qf_nib(raw[0][i], uvec4(16u, 20u, 24u, 28u), 0.0) * scale;
            precise vec4 s0 = p0 + bias;
            precise vec4 s1 = p1 + bias;
            w[2u * i] = s0;
            w[2u * i + 1u] = s1;
        }
    } else if (t == QT_MLX_Q8) {
        for (uint i = 0u; i < 8u; i++) {
            precise vec4 p = qf_ubyte(raw[i >> 2u][i & 3u]) * scale;
            precise vec4 s = p + bias;
            w[i] = s;
        }
    } else if (t == QT_F32) {
        for (uint i = 0u; i < 8u; i++)
            w[i] = uintBitsToFloat(raw[i]);
    } else if (t == QT_F16) {
        for (uint i = 0u; i < 8u; i++) {
            uvec4 r = raw[i >> 1u];
            uvec2 q = (i & 1u) != 0u ? r.zw : r.xy;   // (no dynamic index)
            w[i] = vec4(unpackHalf2x16(q.x), unpackHalf2x16(q.y));
        }
    } else {
        for (uint i = 0u; i < 8u; i++) {
            uvec4 r = raw[i >> 1u];
            uvec2 q = (i & 1u) != 0u ? r.zw : r.xy;
            w[i] = uintBitsToFloat(uvec4(q.x << 16u, q.x & 0xffff0000u,
                                         q.y << 16u, q.y & 0xffff0000u));
        }
    }
}

// sum_i w[i] . x[i]
float qf_dot8(vec4 w[8], vec4 x[8])
{
    return ((dot(w[0], x[0]) + dot(w[1], x[1])) + (dot(w[2], x[2]) + dot(w[3], x[3]))) +
           ((dot(w[4], x[4]) + dot(w[5], x[5])) + (dot(w[6], x[6]) + dot(w[7], x[7])));
}

// One element, exactly as the reference decodes it (dequant: denormal
// products and sums too). `word(i)` is not available generically, so the
// caller passes the code word holding the element and the block's d or the
// group's scale and bias already widened.
float qf_elem_exact(uint t, uint code_word, uint e, float d, float scale, float bias)
{
    // e: element index within its block (0..31)
    if (t == QT_Q4_0) {
        uint sh = e < 16u ? 8u * (e & 3u) : 8u * (e & 3u) + 4u;
        float q = float(int((code_word >> sh) & 0xfu) - 8);
        return mul_exact(d, q);
    }
    if (t == QT_Q8_0) {
        uint b = (code_word >> (8u * (e & 3u))) & 0xffu;
        float q = float(int(b ^ 0x80u) - 128);
        return mul_exact(d, q);
    }
    if (t == QT_MLX_Q4 || t == QT_MLX_Q8) {
        uint bits = t == QT_MLX_Q4 ? 4u : 8u;
        uint per = 32u / bits;
        uint q = (code_word >> (bits * (e % per))) & ((1u << bits) - 1u);
        return add_exact(mul_exact(scale, float(q)), bias);
    }
    if (t == QT_F32)
        return uintBitsToFloat(code_word);
    uint h = (e & 1u) != 0u ? code_word >> 16u : code_word & 0xffffu;
    return t == QT_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// Word (within the block's uvec4s) that holds element e of a block.
uint qf_elem_word(uint t, uint e)
{
    if (t == QT_Q4_0)
        return (e & 15u) >> 2u;
    if (t == QT_Q8_0 || t == QT_MLX_Q8)
        return e >> 2u;
    if (t == QT_MLX_Q4)
        return e >> 3u;
    if (t == QT_F32)
        return e;
    return e >> 1u;
}
