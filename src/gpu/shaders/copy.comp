#version 450
// Bandwidth floors for the bench: MODE 0 copies src to dst (every byte read
// once and written once), MODE 1 only reads src (what a matvec does with
// its weights) and folds it into a value stored only when it equals a push
// constant the host never matches, so the reads cannot be optimized away.
// Grid-stride loop over 16-byte words.
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint MODE = 0u;

layout(std430, binding = 0) readonly buffer Src { uvec4 src[]; };
layout(std430, binding = 1) writeonly buffer Dst { uvec4 dst[]; };

layout(push_constant) uniform P {
    uint n;     // 16-byte words
    uint magic; // MODE 1: the value never stored
} pc;

void main()
{
    uint stride = gl_NumWorkGroups.x * 256u;
    uvec4 acc = uvec4(0u);
    for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += stride) {
        uvec4 v = src[i];
        if (MODE == 0u)
            dst[i] = v;
        else
            acc ^= v;
    }
    if (MODE != 0u && (acc.x ^ acc.y ^ acc.z ^ acc.w) == pc.magic)
        dst[gl_GlobalInvocationID.x] = acc;
}
