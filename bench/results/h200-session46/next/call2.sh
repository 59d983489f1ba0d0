#!/usr/bin/env bash
# Call 2, right after call 1 on the same warm machine: the peer table (bench/device/world-call.sh) with the attention
# call 1 chose (/tmp/bw-attention-choice: own or cudnn; own where call 1 left none). The bench JSONs' engine report
# records it ("attention").
export BATCHWISE_ATTENTION=$(cat /tmp/bw-attention-choice 2>/dev/null || echo own)
echo "BATCHWISE_ATTENTION=$BATCHWISE_ATTENTION"
exec bash bench/device/world-call.sh
