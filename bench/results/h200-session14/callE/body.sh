timeout 135 bash bench/results/h200-session14/callE/callE.sh; cd "$OUT" && tar -czf r.tgz r && rm -rf r
