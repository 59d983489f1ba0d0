timeout 560 bash bench/results/h200-session14/callA/callA.sh; cd "$OUT" && tar -czf r.tgz r && rm -rf r
