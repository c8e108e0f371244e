// Loading blocks of resident tensors (layout: qformat.glsl). The including
// shader binds its tensors as uvec4 arrays and defines, for tensor number
// `which` (a constant at every call site, so the branches fold away):
//   uvec4 w_vec(uint which, uint i)   uvec4 i of the tensor's buffer
//   uint  w_fmt(uint which)           type | group << 8 | scale type << 16
//   uint  w_soff(uint which), w_boff(uint which)  word offsets of the d /
//                                     scale and bias regions
//   uint  w_nb(uint which)            blocks of 32 per row
//   uint  w_gpr(uint which)           MLX groups per row (K / group)

uint w_type(uint which) { return w_fmt(which) & 255u; }

uint w_word(uint which, uint i)
{
    uvec4 v = w_vec(which, i >> 2u);
    return v[i & 3u];
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

float w_dot4_fixed(vec4 a, vec4 b)
{
    precise float s = a.x * b.x;
    s = fma(a.y, b.y, s);
    s = fma(a.z, b.z, s);
    s = fma(a.w, b.w, s);
    return s;
}

// ---- lane parts of a block (the matvec shaders) ---------------------------
// QL = wp_lanes() lanes read one block together: lane part c (0 <= c < QL)
// takes the code words [c WPL, (c + 1) WPL) of the block (one 32-bit word
// of the quantized formats, 2 of F16/BF16, 4 of F32) and decodes their
// elements, wp_nchunk() chunks of 4 consecutive elements: chunk
// wp_chunk(c, i) is elements 4 wp_chunk .. + 3 of the block. The parts of a
// block cover neighbouring activations, so the lanes of a subgroup load
// contiguous activation vec4s (with one block per lane the activation loads
// strode 128 bytes from lane to lane: a cache line per lane and load).

uint wp_lanes(uint which)
{
    uint t = w_type(which);
    return (t == QT_Q4_0 || t == QT_MLX_Q4) ? 4u : 8u;
}

uint wp_nchunk(uint which) { return 8u / wp_lanes(which); }

// Tensors with equal ids map lanes to the same elements (one pass over
// both shares the activation loads).
uint wp_map(uint which)
{
    uint t = w_type(which);
    return t == QT_Q4_0 ? 0u : t == QT_MLX_Q4 ? 1u : 2u;
}

uint wp_chunk(uint which, uint c, uint i)
{
    uint t = w_type(which);
    if (t == QT_Q4_0)
        return c + 4u * i;   // low nibbles: elements 4c.., high: 16 + 4c..
    if (t == QT_MLX_Q4)
        return 2u * c + i;   // word c: elements 8c .. 8c + 7
    return c;
}

// Part c of block b of row `row`: its code words (raw.x .. as WPL), d
// (Q4_0/Q8_0, else 1), MLX scale and bias (else 1 and 0).
void wp_load(uint which, uint row, uint b, uint c, out uvec4 raw,
             out float d, out float sc, out float bi)
{
    uint t = w_type(which);
    uint blk = row * w_nb(which) + b;
    if (t == QT_F32) {
        raw = w_vec(which, blk * 8u + c);
    } else if (t == QT_F16 || t == QT_BF16) {
        uvec4 q = w_vec(which, blk * 4u + (c >> 1u));
        raw = (c & 1u) != 0u ? uvec4(q.zw, 0u, 0u) : uvec4(q.xy, 0u, 0u);
    } else {
        raw = uvec4(w_word(which, blk * qf_vecs(t) * 4u + c), 0u, 0u, 0u);
    }
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

// The part's chunks from its words: the elements qf_decode gives for them.
void wp_decode(uint which, uvec4 raw, float sc, float bi, out vec4 w[2])
{
    uint t = w_type(which);
    w[1] = vec4(0.0);
    if (t == QT_Q4_0) {
        w[0] = qf_nib(raw.x, uvec4(0u, 8u, 16u, 24u), 8.0);
        w[1] = qf_nib(raw.x, uvec4(4u, 12u, 20u, 28u), 8.0);
    } else if (t == QT_MLX_Q4) {
        precise vec4 p0 = qf_nib(raw.x, uvec4(0u, 4u, 8u, 12u), 0.0) * sc;
        precise vec4 p1 = qf_nib(raw.x, uvec4(16u, 20u, 24u, 28u), 0.0) * sc;
        precise vec4 s0 = p0 + bi;
        precise vec4 s1 = p1 + bi;
        w[0] = s0;
        w[1] = s1;
    } else if (t == QT_Q8_0) {
        w[0] = qf_sbyte(raw.x);
    } else if (t == QT_MLX_Q8) {
        precise vec4 p = qf_ubyte(raw.x) * sc;
        precise vec4 s = p + bi;
        w[0] = s;
    } else if (t == QT_F32) {
        w[0] = uintBitsToFloat(raw);
    } else if (t == QT_F16) {
        w[0] = vec4(unpackHalf2x16(raw.x), unpackHalf2x16(raw.y));
    } else {
        w[0] = uintBitsToFloat(uvec4(raw.x << 16u, raw.x & 0xffff0000u,
                                     raw.y << 16u, raw.y & 0xffff0000u));
    }
}

// acc + d w . x (acc + w . x without d) over the part's chunks, in one
// fixed sequence of operations: products and sums `precise`, every
// multiply-add an explicit fma(), which a precise result makes one
// invariant operation. The matvec shaders accumulate with it, so an
// output's value does not depend on how the compiler schedules the code
// around it (one pair per pass, or several pairs per decoded part).
float wp_acc(uint which, vec4 w[2], float d, vec4 x[2], float acc)
{
    precise float s = w_dot4_fixed(w[0], x[0]);
    if (wp_nchunk(which) > 1u)
        s = s + w_dot4_fixed(w[1], x[1]);
    precise float r = qf_has_d(w_type(which)) ? fma(d, s, acc) : acc + s;
    return r;
}
