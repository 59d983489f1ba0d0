import csv, sys
def load(f):
    lines=[l for l in open(f) if l.startswith('"')]
    rows=[]
    for x in csv.DictReader(lines):
        if x.get('Metric Name')!='gpu__time_duration.sum': continue
        v=float(x['Metric Value'].replace(',',''))
        us = v/1000 if x['Metric Unit'] in('nsecond','ns') else (v if x['Metric Unit'] in('usecond','us') else v*1000)
        rows.append((x['Kernel Name'], x['Grid Size'], x['Block Size'], us))
    return rows
def runs(rows, first):
    idx=[i for i,r in enumerate(rows) if r[0]==first]
    return [rows[a:b] for a,b in zip(idx, idx[1:]+[len(rows)])]
f, first = sys.argv[1], sys.argv[2]
rs=runs(load(f), first)
for k,r in enumerate(rs): print(k, len(r), round(sum(x[3] for x in r),1))
sel=rs[int(sys.argv[3])]
for x in sel: print(f"{x[3]:7.2f} {x[1]:>14s} {x[2]:>12s} {x[0][:100]}")
