#!/usr/bin/env bash
# Packs a commit for device calls that source call-lib.sh: .device/cli-full.tar.xz (the CLI, self-contained, folder cli/;
# split unless SPLIT=0: .device1/cli-full.part.aa, .device2/..., every part staged, see the end),
# .device/testdiff.tar.xz (the CUDA test binary's files that differ from the CLI's, flat) and .device/rev.
#   bash bench/device/publish.sh [REV] [WORKTREE]     # REV: default HEAD; WORKTREE: a scratch worktree (made if absent)
#   bash bench/device/publish.sh --overlay REV DEST   # REV's Batchwise.Cuda.dll alone, flat, as .device/DEST (a "base")
# Plain publishes (not ReadyToRun): 39 MB + 1.8 MB in session 18, against 43.7 + 3.5 MB with ReadyToRun, whose larger
# test overlay pushed the carry past the device tool's 64 MiB (carry + tracked tree) in session 17. Throughput is the
# same either way once the JIT has tiered up (bench warms up); startup times (saved engine, first plan) want ReadyToRun.
set -euo pipefail
ROOT=$(git rev-parse --show-toplevel)
excludes=(--exclude='*.pdb' --exclude=createdump --exclude=libmscordaccore.so --exclude=libmscordbi.so --exclude=libclrgcexp.so
  --exclude=libclrgc.so --exclude=Microsoft.VisualBasic.Core.dll --exclude=libSkiaSharp.so --exclude=libHarfBuzzSharp.so --exclude='*.xml'
  --exclude=System.Private.Xml.dll --exclude=System.Private.Xml.Linq.dll --exclude=System.Data.Common.dll)
checkout() { # checkout REV into WORKTREE
  [ -d "$2" ] || git -C "$ROOT" worktree add -q --detach "$2" "$1"
  git -C "$2" checkout -q --detach "$1"
}
if [ "${1:-}" = "--overlay" ]; then
  REV=$(git -C "$ROOT" rev-parse "$2"); WT=/tmp/bw-publish-overlay; OUTDIR=$(mktemp -d)
  checkout "$REV" "$WT"
  dotnet publish "$WT/src/Batchwise.Cli" -c Release -r linux-x64 --self-contained -o "$OUTDIR" | tail -1
  tar -cJf "$ROOT/.device/$3" -C "$OUTDIR" Batchwise.Cuda.dll   # flat: call-lib.sh's unpack refuses a folder prefix
  rm -rf "$OUTDIR"; ls -la "$ROOT/.device/$3"; exit 0
fi
REV=$(git -C "$ROOT" rev-parse "${1:-HEAD}"); WT=${2:-/tmp/bw-publish}; PUB=$(mktemp -d)
checkout "$REV" "$WT"
mkdir -p "$ROOT/.device"
dotnet publish "$WT/tests/Batchwise.Cuda.Tests" -c Release -r linux-x64 --self-contained -o "$PUB/tests" | tail -1
dotnet publish "$WT/src/Batchwise.Cli" -c Release -r linux-x64 --self-contained -o "$PUB/cli" | tail -1
(cd "$PUB/tests" && find . -type f | while read -r f; do
  if [ -f "$PUB/cli/$f" ] && cmp -s "$f" "$PUB/cli/$f"; then continue; fi
  mkdir -p "$PUB/testdiff/$(dirname "$f")"; cp "$f" "$PUB/testdiff/$f"
done)
XZ_OPT="-9 -T4" tar "${excludes[@]}" -cJf "$ROOT/.device/cli-full.tar.xz" -C "$PUB" cli
XZ_OPT="-9 -T4" tar --exclude='*.pdb' --exclude='*.xml' -cJf "$ROOT/.device/testdiff.tar.xz" -C "$PUB/testdiff" .
git -C "$ROOT" rev-parse --short "$REV" > "$ROOT/.device/rev"
rm -rf "$PUB"
ls -la "$ROOT/.device"
# What travels is larger than the tracked files (the device tool sent 40 MB for 26 MB of them in session 25): the CLI
# goes in parts of PART_BYTES (default 8 MB; session 43 was refused 20 MB parts with 44 MB tracked, session 45 14 MB
# parts with 48 MB tracked, session 52 10 MB parts with 50.5 MiB tracked), the leading ones
# carried alone as .device1, .device2, ... and staged (bench/device/stage.sh DIR) while the machine stays warm; .device
# carries the test overlay and rev alone (session 49: with the last part in it too, the call was refused at 60 MiB by the
# count below, 51 MB of it tracked).
if [ "${SPLIT:-1}" = 1 ]; then
  rm -rf "$ROOT"/.device[0-9] "$ROOT"/.device/cli-full.part.*
  split -b "${PART_BYTES:-8000000}" "$ROOT/.device/cli-full.tar.xz" "$ROOT/.device/cli-full.part." && rm "$ROOT/.device/cli-full.tar.xz"
  parts=("$ROOT"/.device/cli-full.part.*); i=0; stages=""
  for part in "${parts[@]}"; do
    i=$((i + 1)); mkdir -p "$ROOT/.device$i" && mv "$part" "$ROOT/.device$i/"; stages="$stages \`bash bench/device/stage.sh .device$i\` (carry [\".device$i\"]),"
  done
  echo "split in $i: run${stages} then the call script with carry [\".device\"], each within 30 s of the last"
fi
# The tracked files alone; the tool also sends git's own files (session 25: ~40 MB in all with 26 MB tracked).
echo "tracked files + .device: $(( ( $(du -cb "$ROOT/.device" | tail -1 | cut -f1) + $(git -C "$ROOT" ls-files -z | (cd "$ROOT" && du --files0-from=- -cb) | tail -1 | cut -f1) ) / 1048576 )) MiB (the call's carry; 64 MiB with what else travels)"
