#!/usr/bin/env bash
# Builds moefuse and runs the whole test suite, every way CI does. Installs
# its dependencies first (scripts/install-deps.sh, apt-get). Stops at the
# first failure with a non-zero status.
#
#   scripts/test-all.sh              every stage below, in this order
#   scripts/test-all.sh gcc clang    only the stages named
#
# Stages (each in its own folder under $MOEFUSE_BUILD_ROOT, default build-test):
#   gcc      gcc, release, -Werror: build and run the suite
#   install  install the gcc build into a scratch prefix; build and run
#            examples/gating_combine.c through `pkg-config --static moefuse`
#   asan     gcc with -fsanitize=address,undefined: build and run the suite
#   clang    clang, release, -Werror: build and run the suite, the GPU tests
#            under the Vulkan validation layer
#   minimal  gcc with -Dvulkan=disabled -Davx2=disabled -Davx512=disabled:
#            builds library, tools and tests
#   aarch64  cross build for aarch64 (NEON, no Vulkan), suite run under
#            qemu-aarch64 with a CPU that has the NEON kernel set's features
#
# MOEFUSE_SEED=N reproduces the random inputs of a failed run (every test
# prints the seed it used).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
root=$(realpath -m "${MOEFUSE_BUILD_ROOT:-build-test}")
all=(gcc install asan clang minimal aarch64)
stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=("${all[@]}")
for s in "${stages[@]}"; do
    case " ${all[*]} " in
    *" $s "*) ;;
    *) echo "test-all.sh: unknown stage '$s' (stages: ${all[*]})" >&2; exit 2 ;;
    esac
done

case " ${stages[*]} " in
*" aarch64 "*) scripts/install-deps.sh --cross ;;
*) scripts/install-deps.sh ;;
esac

jobs=$(nproc)
# Sanitizer reports fail the test that triggers them; malloc returns NULL
# for impossible sizes (tests check MF_ERR_OUT_OF_MEMORY). The link-order
# check is off for the Vulkan driver preloaded in the asan stage.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:halt_on_error=1:detect_leaks=1:allocator_may_return_null=1:verify_asan_link_order=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
# Each test program may take 5 minutes at most (a third of the 900 s that
# tests/meson.build allows when run by hand): a hang fails the run early.
timeout_mult=0.34

# setup DIR [meson options...]: configure DIR (again when it exists).
setup() {
    local dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "$@"
    else
        meson setup "$dir" "$@"
    fi
}

build_and_test() {
    local dir=$1
    ninja -C "$dir" -j "$jobs"
    meson test -C "$dir" --no-rebuild --print-errorlogs \
        --timeout-multiplier "$timeout_mult"
}

stage_gcc() {
    # (the prefix is where the install stage puts the library)
    CC=gcc setup "$root/gcc" --werror --prefix "$root/install/prefix"
    build_and_test "$root/gcc"
}

stage_install() {
    [ -f "$root/gcc/build.ninja" ] || stage_gcc
    ninja -C "$root/gcc" -j "$jobs"
    local prefix=$root/install/prefix
    rm -rf "$prefix"
    meson install -C "$root/gcc" --no-rebuild --quiet
    local pc
    pc=$(find "$prefix" -name moefuse.pc -print -quit)
    [ -n "$pc" ] || { echo "test-all.sh: moefuse.pc was not installed" >&2; return 1; }
    local flags
    flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --static --cflags --libs moefuse)
    echo "pkg-config --static --cflags --libs moefuse: $flags"
    # shellcheck disable=SC2086 # flags are words
    gcc -std=c11 -Wall -Wextra -Werror examples/gating_combine.c $flags \
        -o "$root/install/gating_combine"
    local out
    out=$("$root/install/gating_combine")
    echo "$out"
    # softmax top-2 of the example's logits, renormalized: experts 1 and 4
    # with weights 1/(1+e^-0.5) and 1/(1+e^0.5)
    grep -q '^experts 1 4, weights 0.6225 0.3775$' <<<"$out" ||
        { echo "test-all.sh: the example printed something unexpected" >&2; return 1; }
}

stage_asan() {
    local dir=$root/asan
    # -O1 as the sanitizers recommend; it also compiles the SIMD kernels
    # several times faster than -O2 does under instrumentation.
    CC=gcc setup "$dir" --werror -Doptimization=1 -Ddebug=true \
        -Db_sanitize=address,undefined -Db_lundef=false
    ninja -C "$dir" -j "$jobs"
    # lavapipe keeps one-time allocations in its globals. When a process
    # destroys its last VkInstance the loader unloads the driver and
    # LeakSanitizer reports them as moefuse's leaks; preloaded, the driver
    # stays mapped and they stay reachable.
    local icd wrap=()
    icd=/usr/share/vulkan/icd.d/lvp_icd.$(uname -m).json
    if [ -f "$icd" ]; then
        wrap=(--wrapper "env LD_PRELOAD=$(sed -n 's/.*"library_path": *"\([^"]*\)".*/\1/p' "$icd")")
    fi
    meson test -C "$dir" --no-rebuild --print-errorlogs \
        --timeout-multiplier "$timeout_mult" "${wrap[@]}"
}

stage_clang() {
    CC=clang setup "$root/clang" --werror
    # The GPU tests run under the Khronos validation layer here and fail on
    # any message it reports.
    MOEFUSE_VK_VALIDATION=1 build_and_test "$root/clang"
}

stage_minimal() {
    # Compiles only: the scalar-only, Vulkan-less library also runs the whole
    # suite in the aarch64 stage.
    CC=gcc setup "$root/minimal" --werror -Dvulkan=disabled -Davx2=disabled \
        -Davx512=disabled
    ninja -C "$root/minimal" -j "$jobs"
}

stage_aarch64() {
    local dir=$root/aarch64
    setup "$dir" --werror -Dvulkan=disabled \
        --cross-file .sysroot/arm64/paths.ini \
        --cross-file cross/aarch64-linux-gnu.ini
    ninja -C "$dir" -j "$jobs"
    # The suite must exercise the NEON kernels: check the emulated CPU offers
    # them to this build.
    local sets
    sets=$(qemu-aarch64 -cpu max -L / "$dir/tools/moefuse-doctor" --json |
           grep '"kernel_sets"' || true)
    echo "aarch64 under qemu: $sets"
    grep -q '"neon"' <<<"$sets" ||
        { echo "test-all.sh: NEON is not available under qemu" >&2; return 1; }
    meson test -C "$dir" --no-rebuild --print-errorlogs \
        --timeout-multiplier "$timeout_mult"
}

declare -A took
current=
on_exit() {
    local rc=$?
    [ "$rc" -eq 0 ] || echo "=== FAILED in stage $current (exit $rc)" >&2
}
trap on_exit EXIT
for s in "${stages[@]}"; do
    echo "=== $s"
    current=$s
    t0=$(date +%s)
    "stage_$s"
    took[$s]=$(($(date +%s) - t0))
done
current=
echo "=== all passed:"
for s in "${stages[@]}"; do
    printf '  %-8s %4ss\n' "$s" "${took[$s]}"
done
