timeout 570 bash bench/results/h200-session14/callD/callD.sh; cd "$OUT" && tar -czf r.tgz r && rm -rf r
