#!/usr/bin/env bash
# Shared scaffolding of a device call's script (sourced, not run): the steps every call script of sessions 13-17 wrote
# out again (bench/results/h200-session*/call*/*.sh keep their own copies as they ran).
#
#   source bench/device/call-lib.sh 560          # seconds this call may take in all (the run tool's limit, less margin)
#   unpack cli tests base                        # .device/cli-full.tar.xz into $WORK/cli, plus a test tree and overlays
#   q TAG LIMIT command...                        # run with a time limit into $R/TAG.txt, log exit + throughput rows
#   t "message"                                  # a timed line in $R/log.txt
#   pack                                         # last: $OUT/r.tar.xz and $OUT/log.txt (the run tool returns few files)
#
# What .device holds (bench/device/publish.sh packs it; carry it with `carry: [".device"]`; with the tracked tree it must
# stay under 64 MiB):
#   cli-full.tar.xz  the self-contained CLI publish (folder cli/);
#   testdiff.tar.xz  the test publish's files that differ from the CLI's (flat: extracted over a copy of cli/);
#   cli-base.tar.xz  files of an earlier build extracted over a copy of cli/ to time it in the same call; FLAT, no
#                    folder prefix: `tar -cJf .device/cli-base.tar.xz -C /tmp/earlier/cli Batchwise.Cuda.dll`
#                    (session 17's call 4 packed it as cli/Batchwise.Cuda.dll, so its "base" ran the new code);
#   cli-old2.tar.xz  phase 1's files over a copy of cli/ (flat); node.tar.xz Debian's ONNX node cases (folder node/).
set -uo pipefail
R=${OUT:?the run tool sets OUT}/r
WORK=${WORK:-/tmp/bw}
mkdir -p "$WORK" "$R"
CALL_SECONDS=${1:-560}
start=$(date +%s)
export BATCHWISE_CACHE_DIR=${BATCHWISE_CACHE_DIR:-$WORK/cache} DOTNET_CLI_TELEMETRY_OPTOUT=1

t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( CALL_SECONDS - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }

# q TAG LIMIT command...: the command's output in $R/TAG.txt; the log gets its exit status and bench's rows at b=1..256.
q() {
  local tag=$1 limit
  limit=$(lim "$2"); shift 2
  timeout "$limit" "$@" > "$R/$tag.txt" 2>&1
  t "$tag exit $? $(grep -E '│ +(1|8|32|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"
}

# unpack [tests] [base] [old] [node]: $WORK/cli always; tests, base and old as copies of cli/ with their overlay.
unpack() {
  local full=.device/cli-full.tar.xz
  if [ ! -f "$full" ]; then
    # Carried in several calls (the tree and one carry must stay under 64 MiB): the leading parts staged by stage.sh.
    full=$WORK/cli-full.tar.xz
    cat /tmp/bw-parts/cli-full.part.* .device/cli-full.part.* > "$full" 2>/dev/null
  fi
  rm -rf "$WORK/cli" && tar -xJf "$full" -C "$WORK" || { t "no .device/cli-full.tar.xz (nor its parts: run bench/device/stage.sh first)"; return 1; }
  CLI=$WORK/cli/Batchwise.Cli
  local what
  for what in "$@"; do
    case $what in
      tests) rm -rf "$WORK/tests" && cp -r "$WORK/cli" "$WORK/tests" && tar -xJf .device/testdiff.tar.xz -C "$WORK/tests"; TESTS=$WORK/tests/Batchwise.Cuda.Tests ;;
      base) rm -rf "$WORK/base" && cp -r "$WORK/cli" "$WORK/base" && tar -xJf .device/cli-base.tar.xz -C "$WORK/base"; BASE=$WORK/base/Batchwise.Cli
        # An overlay with a folder prefix lands beside the files it should replace: refuse to time such a "base".
        if [ -d "$WORK/base/cli" ]; then t "cli-base.tar.xz has a folder prefix: pack it flat (see call-lib.sh)"; return 1; fi ;;
      old) rm -rf "$WORK/old" && cp -r "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"; OLD=$WORK/old/Batchwise.Cli ;;
      node) tar -xJf .device/node.tar.xz -C "$WORK"; NODE=$WORK/node ;;
      *) t "unpack: unknown part $what"; return 1 ;;
    esac
  done
  t "extracted ($*); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null); git $(cat .device/rev 2>/dev/null)"
}

# pack: large JSON reports xz-compressed, everything under $R into $OUT/r.tar.xz, the log beside it.
pack() {
  find "$R" -name '*.json' -size +200k -exec xz -9 {} \;
  t "done"
  (cd "$OUT" && tar -cJf r.tar.xz r && cp r/log.txt log.txt && rm -rf r)
}
