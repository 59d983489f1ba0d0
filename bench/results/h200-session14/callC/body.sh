timeout 565 bash bench/results/h200-session14/callC/callC.sh; cd "$OUT" && tar -czf r.tgz r && rm -rf r
