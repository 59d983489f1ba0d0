#!/usr/bin/env bash
# The first half of a carry too large for one device call (the tree and the carry must stay under 64 MiB together):
#   split -b 20000000 .device/cli-full.tar.xz /tmp/cli-full.part.; mkdir -p .device1
#   mv /tmp/cli-full.part.aa .device1/; mv /tmp/cli-full.part.ab .device/; rm .device/cli-full.tar.xz
# then run this with carry [".device1"] and, while the machine is still warm (30 s), the call script with carry
# [".device"]: call-lib.sh's unpack joins /tmp/bw-parts/cli-full.part.* and .device/cli-full.part.*.
set -euo pipefail
rm -rf /tmp/bw-parts && mkdir -p /tmp/bw-parts && cp .device1/cli-full.part.* /tmp/bw-parts/ && ls -la /tmp/bw-parts
