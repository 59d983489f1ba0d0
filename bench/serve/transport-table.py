#!/usr/bin/env python3
# Summarizes bench/serve/transport-cpu.sh OUTDIR as a markdown table: before/after ratios within each round.
import json,sys,glob,re,os
out=sys.argv[1]
srv={}
for line in open(f"{out}/server.txt"):
    p=line.split(); srv[p[0]]=(float(p[2]),int(p[4]),float(p[6]) if len(p)>6 else float('nan'))
rows={}
for f in sorted(glob.glob(f"{out}/r*-*.json")):
    name=os.path.basename(f)[:-5]
    r,build,proto,c,shm=re.match(r"r(\d+)-(before|after)-(http|grpc)-c(\d+)(?:-(\w+))?$",name).groups()
    proto+=f" shm={shm}" if shm else ""
    d=json.load(open(f)); p=d["points"][0]
    rows[(int(r),proto,int(c),build)]=(p["inferences_per_second"],p["latency"]["p50"],p.get("client_cpu_milliseconds_per_request",float("nan")),p.get("client_cores_busy",float("nan")),p.get("client_bound"),srv.get(name,(float('nan'),0))[0],p["stable"],srv.get(name,(0,0,float('nan')))[2])
print("| round | protocol | c | before infer/s | after infer/s | ratio | before p50 ms | after p50 ms | server CPU ms/req before | after | ratio | of it native (ORT) threads before | after | client CPU ms/req before | after | client-bound (after) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (r,proto,c,build) in sorted(rows):
    if build!="after": continue
    a=rows[(r,proto,c,"after")]; b=rows.get((r,proto,c,"before"))
    if not b: continue
    print(f"| {r} | {proto} | {c} | {b[0]:,.0f} | {a[0]:,.0f} | {a[0]/b[0]:.2f} | {b[1]:.2f} | {a[1]:.2f} | {b[5]:.2f} | {a[5]:.2f} | {a[5]/b[5]:.2f} | {b[7]:.2f} | {a[7]:.2f} | {b[2]:.2f} | {a[2]:.2f} | {'yes' if a[4] else 'no'} |")
