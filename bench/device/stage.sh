#!/usr/bin/env bash
# The leading parts of a carry too large for one device call (the tree, git's own files and the carry must stay under the
# device tool's 64 MiB together): publish.sh splits the CLI into parts of PART_BYTES, the first in .device1, the next in
# .device2 (and so on), the last in .device. Stage each leading folder while the machine stays warm (30 s between calls):
#   run `bash bench/device/stage.sh .device1` with carry [".device1"]   (empties /tmp/bw-parts first)
#   run `bash bench/device/stage.sh .device2` with carry [".device2"]   (adds to it)
# then the call script with carry [".device"]: call-lib.sh's unpack joins /tmp/bw-parts/cli-full.part.* and
# .device/cli-full.part.*. Session 43: 20 MB parts were refused ("larger than 64 MiB") with 44 MB tracked, 14 MB went; session 45: 14 MB refused with 48 MB tracked, 10 MB went.
set -euo pipefail
dir=${1:-.device1}
[ "$dir" = .device1 ] && rm -rf /tmp/bw-parts
mkdir -p /tmp/bw-parts && cp "$dir"/cli-full.part.* /tmp/bw-parts/ && ls -la /tmp/bw-parts
