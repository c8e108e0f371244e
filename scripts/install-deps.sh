#!/usr/bin/env bash
# Installs what moefuse needs on Debian 12 (bookworm) with apt-get.
# Idempotent: packages already present are not touched, and apt-get runs only
# when something is missing.
#
#   scripts/install-deps.sh            build, test and run on this machine
#   scripts/install-deps.sh --cross    also the aarch64 cross build run under
#                                      qemu (arm64 libraries + a local sysroot
#                                      for Criterion in .sysroot/arm64)
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cross=0
for a in "$@"; do
    case "$a" in
    --cross) cross=1 ;;
    -h | --help)
        sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0 ;;
    *) echo "install-deps.sh: unknown argument '$a'" >&2; exit 2 ;;
    esac
done

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps.sh: run as root or install sudo" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

native=(
    gcc clang meson ninja-build pkgconf git ca-certificates
    libcriterion-dev libopenblas-dev libhwloc-dev
    # private libraries of hwloc and OpenBLAS: `pkg-config --static moefuse`
    libudev-dev libgfortran-12-dev
    libvulkan-dev glslc mesa-vulkan-drivers vulkan-validationlayers
)
# The arm64 libraries the cross build links and runs against. All of them are
# Multi-Arch: same, so they sit beside the amd64 ones. Criterion is not among
# them: libcriterion-dev:arm64 (through libnanomsg5, which is not multi-arch)
# would replace the amd64 one, so its libraries are unpacked into a project
# sysroot below instead.
cross_host=(gcc-aarch64-linux-gnu qemu-user)
cross_arm64=(libc6:arm64 libhwloc-dev:arm64 libopenblas-dev:arm64
             libgit2-1.5:arm64 libffi8:arm64)
cross_unpacked=(libcriterion3:arm64 libcriterion-dev:arm64 libnanomsg5:arm64)

missing() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
            printf '%s\n' "$p"
    done
}

want=("${native[@]}")
if [ "$cross" = 1 ]; then
    want+=("${cross_host[@]}" "${cross_arm64[@]}")
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        "${sudo[@]}" dpkg --add-architecture arm64
    fi
fi

mapfile -t todo < <(missing "${want[@]}")
updated=0
if [ "${#todo[@]}" -gt 0 ]; then
    echo "install-deps.sh: installing ${todo[*]}"
    "${sudo[@]}" apt-get update -q
    updated=1
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${todo[@]}"
fi

if [ "$cross" = 1 ]; then
    sysroot="$top/.sysroot/arm64"
    if [ ! -e "$sysroot/usr/lib/aarch64-linux-gnu/libcriterion.so" ] ||
       [ ! -e "$sysroot/usr/lib/aarch64-linux-gnu/libnanomsg.so.5" ]; then
        [ "$updated" = 1 ] || "${sudo[@]}" apt-get update -q
        debs=$(mktemp -d)
        # apt downloads as the _apt user when it can write the folder.
        chmod 777 "$debs"
        (cd "$debs" && apt-get download -q "${cross_unpacked[@]}")
        mkdir -p "$sysroot"
        for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$sysroot"; done
        rm -rf "$debs"
    fi
    # The cross file reads the sysroot's absolute path from here.
    printf "[constants]\nsysroot = '%s'\n" "$sysroot" >"$sysroot/paths.ini"
fi
