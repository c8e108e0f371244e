#version 450
// Cache warming for the MoE chain: reads the image bytes of the experts a
// routing selected (idx, written by the gating dispatch before) so that a
// later dispatch finds them in the device's last-level cache. Recorded
// without a barrier against the dispatch it runs beside (it writes nothing
// another dispatch reads), so its reads overlap that dispatch's.
// Per pair p (y, strided) with e = idx[p], each region r of the tensor's
// image (codes, d or scales, biases) spans the bytes
// [start[r] + e len[r], + len[r]); the workgroups along x stride over its
// 16-byte words. A pair whose expert an earlier pair already has is
// skipped. The reads are folded into a value stored (in a buffer no one
// reads) only when it equals a push constant the host never matches, so
// they cannot be optimized away.
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer W { uvec4 w[]; };
layout(std430, binding = 1) readonly buffer Ib { uint ib[]; };
layout(std430, binding = 2) writeonly buffer D { uvec4 dst[]; };

layout(push_constant) uniform P {
    uint P, E, idx_off, magic;
    uint start[3], len[3]; // bytes; len 0: no such region
} pc;

void main()
{
    uint lid = gl_LocalInvocationID.x;
    uint step = gl_NumWorkGroups.x * 256u;
    uvec4 acc = uvec4(0u);
    for (uint p = gl_WorkGroupID.y; p < pc.P; p += gl_NumWorkGroups.y) {
        uint e = min(ib[pc.idx_off + p], pc.E - 1u);
        bool dup = false;
        for (uint q = 0u; q < p; q++)
            dup = dup || min(ib[pc.idx_off + q], pc.E - 1u) == e;
        if (dup)
            continue;
        for (uint r = 0u; r < 3u; r++) {
            if (pc.len[r] == 0u)
                continue;
            uint b0 = pc.start[r] + e * pc.len[r];
            uint i0 = b0 / 16u, i1 = (b0 + pc.len[r] + 15u) / 16u;
            uint i = i0 + gl_WorkGroupID.x * 256u + lid;
            // four loads in flight per invocation
            for (; i + 3u * step < i1; i += 4u * step)
                acc ^= w[i] ^ w[i + step] ^ w[i + 2u * step] ^ w[i + 3u * step];
            for (; i < i1; i += step)
                acc ^= w[i];
        }
    }
    if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == pc.magic)
        dst[0] = acc;
}
