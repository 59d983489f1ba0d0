import csv, sys, collections
def load(f):
    lines=[l for l in open(f) if l.startswith('"')]
    rows=collections.OrderedDict()
    for x in csv.DictReader(lines):
        key=int(x['ID'])
        d=rows.setdefault(key,{'name':x['Kernel Name'],'grid':x['Grid Size'],'block':x['Block Size']})
        d[x['Metric Name']]=x['Metric Value']
    return list(rows.values())
a=load(sys.argv[1]); b=load(sys.argv[2])
print(len(a),len(b))
ta=tb=0
for x,y in zip(a,b):
    da=float(x['Duration'].replace(',','')); db=float(y['Duration'].replace(',',''))
    ta+=da; tb+=db
    print(f"{x['name'][:60]:60s} {x['grid']:>14s} {x['block']:>12s} {da:8.2f} {db:8.2f} {x.get('Registers Per Thread','?'):>4s} {y.get('Registers Per Thread','?'):>4s}  {y['name'][:40] if y['name']!=x['name'] else ''}")
print(ta,tb)
