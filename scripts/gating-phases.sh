#!/usr/bin/env bash
# Where the gating shader's device time goes, phase by phase: builds
# moefuse-bench three more times, from a copy of this working tree whose
# gating.comp stops each token row after phase N (1: logits loaded and
# scored; 2: groups selected, sigmoid mode; 3: experts selected) and
# stores a value depending on the work done, so nothing is optimized
# away. The outputs of these builds are wrong by design: they are for
# timing only, never for tests.
#   scripts/gating-phases.sh OUTDIR
# writes OUTDIR/moefuse-bench-gstop1..3. Compare their `gpu` time of
#   moefuse-bench-gstopN gpu --quick --op gating --model deepseek-v3
# with the real build's, in one run on the same machine.
set -euo pipefail

[ $# -eq 1 ] && [ "$1" != "-h" ] && [ "$1" != "--help" ] || {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -eq 1 ]; exit $?
}
command -v python3 >/dev/null || { echo "gating-phases: needs python3" >&2; exit 1; }
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(realpath -m "$1")
mkdir -p "$out"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
(cd "$top" && git ls-files -co --exclude-standard | tar -cf - -T -) | tar -C "$src" -xf -

python3 - "$src/src/gpu/shaders/gating.comp" <<'EOF'
import sys
p = sys.argv[1]
s = open(p).read()
stop = '''
#if GATING_STOP == %d
        atomicOr(s_flag, key[0] | (bad ? 1u : 0u));
        barrier();
        if (tid == 0u)
            v_out[2u * pc.T * k + row] = s_flag;
        barrier();
        continue;
#endif
'''
points = [
    '''        if (SCAP > 1u || LCAP > 1u)
            barrier();  // the score and logit caches are complete
''',
    '''                if (i < E && g_kept[i / gs] == 0u)
                    key[j] = 0u;
            }
        }
''',
    '''        if (SELG != 0u)
            memoryBarrierBuffer();
        barrier();
''']
for n, a in enumerate(points, 1):
    if s.count(a) != 1:
        sys.exit("gating-phases: phase %d's end not found in gating.comp" % n)
    s = s.replace(a, a + stop % n)
head = '#extension GL_GOOGLE_include_directive : require'
s = s.replace(head, head + '\n#ifndef GATING_STOP\n#define GATING_STOP 0\n#endif', 1)
open(p, 'w').write(s)
EOF

cd "$src"
meson setup build --buildtype=release -Dtests=false >/dev/null
for n in 1 2 3; do
    sed -i "s/^#define GATING_STOP [0-9]/#define GATING_STOP $n/" src/gpu/shaders/gating.comp
    ninja -C build bench/moefuse-bench >/dev/null
    cp build/bench/moefuse-bench "$out/moefuse-bench-gstop$n"
    echo "gating-phases: $out/moefuse-bench-gstop$n"
done
