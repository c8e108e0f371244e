// Loading blocks of resident tensors (layout: qformat.glsl). The including
// shader binds its tensors as uvec4 arrays and defines, for tensor number
// `which` (a constant at every call site, so the branches fold away):
//   uvec4 w_vec(uint which, uint i)   uvec4 i of the tensor's buffer
//   uint  w_fmt(uint which)           type | group << 8 | scale type << 16
//   uint  w_soff(uint which), w_boff(uint which)  word offsets of the d /
//                                     scale and bias regions
//   uint  w_nb(uint which)            blocks of 32 per row
//   uint  w_gpr(uint which)           MLX groups per row (K / group)
//   uint  w_row0(uint which)          the first row of the tensor that the
//                                     bound buffer holds (a tensor split
//                                     into parts, wcache.c: the part's
//                                     first row; else 0)
// Callers pass rows of the whole tensor.

uint w_type(uint which) { return w_fmt(which) & 255u; }

// (the component by selects: a dynamic index into a vector can put it in
// local memory, as NVIDIA's compiler did: 64 bytes a thread in gate_up)
uint w_word(uint which, uint i)
{
    uvec4 v = w_vec(which, i >> 2u);
    uvec2 h = (i & 2u) != 0u ? v.zw : v.xy;
    return (i & 1u) != 0u ? h.y : h.x;
}

// Scale or bias gi of an MLX tensor whose array starts at word off.
float w_param(uint which, uint off, uint gi)
{
    uint st = w_fmt(which) >> 16u;
    if (st == QT_F32)
        return uintBitsToFloat(w_word(which, off + gi));
    uint w = w_word(which, off + (gi >> 1u));
    return qf_half((gi & 1u) != 0u ? w >> 16u : w & 0xffffu, st);
}

// Block b of row `row`: its raw uvec4s, d (Q4_0/Q8_0, else 1), MLX scale
// and bias (else 1 and 0).
void w_load(uint which, uint row, uint b, out uvec4 raw[8], out float d,
            out float sc, out float bi)
{
    uint t = w_type(which);
    uint v = qf_vecs(t);
    row -= w_row0(which);
    uint blk = row * w_nb(which) + b;
    for (uint i = 0u; i < 8u; i++)
        raw[i] = i < v ? w_vec(which, blk * v + i) : uvec4(0u);
    d = 1.0;
    sc = 1.0;
    bi = 0.0;
    if (qf_has_d(t)) {
        uint wd = w_word(which, w_soff(which) + (blk >> 1u));
        d = f16_to_f32((blk & 1u) != 0u ? wd >> 16u : wd & 0xffffu);
    } else if (qf_is_mlx(t)) {
        uint gs = (w_fmt(which) >> 8u) & 255u;
        uint gi = row * w_gpr(which) + (32u * b) / gs;
        sc = w_param(which, w_soff(which), gi);
        bi = w_param(which, w_boff(which), gi);
    }
}

// Dot product of block (row, b) with the 32 activations at vec4 index xv
// of `x` — the shader provides vec4 x_vec(uint i) — times d.
float w_dot_raw(uint which, uvec4 raw[8], float d, float sc, float bi,
                vec4 xv[8])
{
    uint t = w_type(which);
    vec4 w[8];
    qf_decode(t, w_fmt(which) >> 16u, raw, sc, bi, w);
    float s = qf_dot8(w, xv);
    return qf_has_d(t) ? d * s : s;
}

// The block's elements from its raw uvec4s (qf_decode with the tensor's
// format).
void w_decode(uint which, uvec4 raw[8], float sc, float bi, out vec4 w[8])
{
    qf_decode(w_type(which), w_fmt(which) >> 16u, raw, sc, bi, w);
}

float w_dot4_fixed(vec4 a, vec4 b)
{
    precise float s = a.x * b.x;
    s = fma(a.y, b.y, s);
    s = fma(a.z, b.z, s);
    s = fma(a.w, b.w, s);
    return s;
}

// acc + d w . x (acc + w . x without d) for a decoded block w and 32
// activations x, in one fixed sequence of operations: products and sums
// `precise`, every multiply-add an explicit fma(), which a precise result
// makes one invariant operation. The expert shaders accumulate with it, so
// an output's value does not depend on how the compiler schedules the code
// around it (one pair per pass, or several pairs per decoded block).
float w_acc_fixed(uint which, vec4 w[8], float d, vec4 x[8], float acc)
{
    precise float s = ((w_dot4_fixed(w[0], x[0]) + w_dot4_fixed(w[1], x[1])) +
                       (w_dot4_fixed(w[2], x[2]) + w_dot4_fixed(w[3], x[3]))) +
                      ((w_dot4_fixed(w[4], x[4]) + w_dot4_fixed(w[5], x[5])) +
                       (w_dot4_fixed(w[6], x[6]) + w_dot4_fixed(w[7], x[7])));
    precise float r = qf_has_d(w_type(which)) ? fma(d, s, acc) : acc + s;
    return r;
}
