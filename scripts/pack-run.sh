#!/usr/bin/env bash
# Packs built programs for a machine that has a GPU driver but none of the
# build's libraries (a measurement host without network access):
#   scripts/pack-run.sh OUT PROGRAM...
# writes OUT/pkg.tar.xz (the programs, under names that stay distinct:
# a path's last component, so copy variants to distinct names first, and
# every shared library they link but the C library, the dynamic loader and
# the Vulkan loader) and OUT/env.sh. On the target, from the folder holding
# OUT, `source OUT/env.sh` unpacks it into /tmp/moefuse-run, installs the
# Vulkan loader from the .deb files in $MOEFUSE_PACK_DEBS (default .gl;
# fetch them here with
#   apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2
# for the target's architecture), and puts the programs on PATH.
# A run script written after this one (OUT is recreated) sources env.sh,
# then runs everything it needs in one go.
set -euo pipefail

if [ $# -lt 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -ge 2 ] || exit 2
    exit 0
fi
out=$1
shift
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
for p in "$@"; do
    [ -x "$p" ] || { echo "pack-run: $p: not an executable" >&2; exit 1; }
    cp "$p" "$stage/bin/"
    ldd "$p" | awk '/=>/ {print $3}' |
        grep -v -E 'libc\.so|libm\.so|libvulkan|ld-linux|libpthread|libdl\.so|librt\.so' |
        while read -r l; do cp -L "$l" "$stage/lib/"; done
done
rm -rf "$out"
mkdir -p "$out"
tar -C "$stage" -cJf "$out/pkg.tar.xz" bin lib
cat > "$out/env.sh" <<EOS
# from scripts/pack-run.sh: source in the folder that holds $out
mkdir -p /tmp/moefuse-run && tar -C /tmp/moefuse-run -xJf $out/pkg.tar.xz
for f in \${MOEFUSE_PACK_DEBS:-.gl}/*.deb; do [ -f "\$f" ] && dpkg -x "\$f" /; done
ldconfig
export LD_LIBRARY_PATH=/tmp/moefuse-run/lib PATH=/tmp/moefuse-run/bin:\$PATH
ldconfig -p | grep -q libvulkan || echo "pack-run: no Vulkan loader on this machine" >&2
EOS
du -sh "$out" | cut -f1 | sed "s|^|pack-run: $out: |"
