#!/usr/bin/env bash
# The main job: installs the dependencies, builds moefuse (release) and then
#   1. moefuse-doctor          what the library sees: CPU, kernel sets,
#                              threads, Vulkan devices, placement cache
#   2. moefuse-profile --quick measures CPU and GPU on this machine and writes
#                              the placement cache the router reads
#   3. moefuse-bench report    the CPU-vs-GPU report from those measurements
# Each step must succeed; a tool missing from the build is an error.
#
# The build lives in $MOEFUSE_BUILD_ROOT/main (default build-test/main), the
# profile's results file and plots in its profile/; the placement cache in
# $XDG_CACHE_HOME/moefuse/ (default ~/.cache/moefuse/).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
scripts/install-deps.sh

dir=$(realpath -m "${MOEFUSE_BUILD_ROOT:-build-test}")/main
if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" -Dbuildtype=release -Dtests=false
else
    meson setup "$dir" -Dbuildtype=release -Dtests=false
fi
ninja -C "$dir" -j "$(nproc)"

# tool NAME: the path of the built program NAME.
tool() {
    local p
    p=$(find "$dir" -path '*.p' -prune -o -type f -name "$1" -perm -u+x -print -quit)
    if [ -z "$p" ]; then
        echo "main-job.sh: the build has no $1" >&2
        return 1
    fi
    printf '%s\n' "$p"
}
doctor=$(tool moefuse-doctor)
profile=$(tool moefuse-profile)
bench=$(tool moefuse-bench)

echo "=== moefuse-doctor"
"$doctor"
echo "=== moefuse-profile --quick"
# its results file and plots beside the build, not in the working tree
out="$dir/profile"
mkdir -p "$out"
"$profile" --quick --json "$out/moefuse-profile.json" --svg-dir "$out"
echo "profile results: $out/moefuse-profile.json, $out/profile_*.svg"
echo "=== moefuse-bench report"
"$bench" report
