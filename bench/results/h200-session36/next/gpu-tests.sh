#!/usr/bin/env bash
# PREPARED, NOT RUN (for the next session; publish of this session's final code, carry .device/node.tar.xz too:
# tar -cJf .device/node.tar.xz -C /usr/share/libonnx-testdata/data node): every GPU test class and ONNX's node cases,
# not run in full since session 31 while sessions 32-36 changed the int8 kernels, the stem and (34f1249) every fp32
# plan's workspace limit. Int8PointwiseGpuTests needs ~250 s with its 32-pixel theory; the rest in the time left (a
# second call for the classes not reached: CLASSES="..." from the summary's "not run" lines).
source bench/device/call-lib.sh 575
unpack tests node || { pack; exit 1; }
BATCHWISE_ONNX_NODE_TESTS=$NODE LIMITS="Int8PointwiseGpuTests=280 Int8ModelGpuTests=240 NodeGpuTests=200" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
pack
