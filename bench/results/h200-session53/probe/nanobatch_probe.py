"""Does running a transformer encoder as two (or four) half-batch chains on separate streams of one CUDA graph overlap
the memory-bound steps (GELU pass, LayerNorm, attention) of one chain with the compute-bound products of the other?
DistilBERT-sized layers (d 768, 12 heads, FFN 3072, erf GELU as a separate pass, post-LN, SDPA), fp16, b=64, seq 128,
against one chain of the whole batch; every variant a captured graph replayed back to back, timed by two events."""
import argparse
import json

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=64)
p.add_argument("--seq", type=int, default=128)
p.add_argument("--layers", type=int, default=4)
p.add_argument("--out", default="")
args = p.parse_args()
torch.manual_seed(0)
dev = "cuda"
h, d, ffn, heads = 768, 64, 3072, 12
L = []
for _ in range(args.layers):
    L.append(dict(
        wqkv=torch.randn(h, 3 * h, device=dev, dtype=torch.half) * 0.02, bqkv=torch.zeros(3 * h, device=dev, dtype=torch.half),
        wo=torch.randn(h, h, device=dev, dtype=torch.half) * 0.02, bo=torch.zeros(h, device=dev, dtype=torch.half),
        w1=torch.randn(h, ffn, device=dev, dtype=torch.half) * 0.02, b1=torch.zeros(ffn, device=dev, dtype=torch.half),
        w2=torch.randn(ffn, h, device=dev, dtype=torch.half) * 0.02, b2=torch.zeros(h, device=dev, dtype=torch.half),
        g1=torch.ones(h, device=dev, dtype=torch.half), be1=torch.zeros(h, device=dev, dtype=torch.half),
        g2=torch.ones(h, device=dev, dtype=torch.half), be2=torch.zeros(h, device=dev, dtype=torch.half)))


def layer(x, w, b, s):
    qkv = torch.addmm(w["bqkv"], x, w["wqkv"]).view(b, s, 3, heads, d)
    q, k, v = qkv.unbind(2)
    a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2).reshape(b * s, h)
    x = F.layer_norm(torch.addmm(w["bo"], a, w["wo"]) + x, (h,), w["g1"], w["be1"])
    f = F.gelu(torch.addmm(w["b1"], x, w["w1"]))
    return F.layer_norm(torch.addmm(w["b2"], f, w["w2"]) + x, (h,), w["g2"], w["be2"])


def chain(x, b, s):
    for w in L:
        x = layer(x, w, b, s)
    return x


def time_graph(fn, reps=20, windows=7):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn()
    for _ in range(5):
        g.replay()
    torch.cuda.synchronize()
    res = []
    for _ in range(windows):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(reps):
            g.replay()
        e1.record()
        e1.synchronize()
        res.append(e0.elapsed_time(e1) * 1000 / reps)
    res.sort()
    return res[len(res) // 2], out


B, S = args.batch, args.seq
x = torch.randn(B * S, h, device=dev, dtype=torch.half)
rows = {}


def whole():
    return chain(x, B, S)


def split(parts, stagger=False):
    def run():
        main = torch.cuda.current_stream()
        streams = [torch.cuda.Stream() for _ in range(parts)]
        outs = []
        per = B // parts
        for i, st in enumerate(streams):
            st.wait_stream(main)
        for i, st in enumerate(streams):
            with torch.cuda.stream(st):
                outs.append(chain(x[i * per * S:(i + 1) * per * S], per, S))
        for st in streams:
            main.wait_stream(st)
        return torch.cat(outs)
    return run


def interleaved(parts):
    """The halves' layers issued alternately, each chain on its own stream: what a two-lane plan would capture."""
    def run():
        main = torch.cuda.current_stream()
        streams = [torch.cuda.Stream() for _ in range(parts)]
        per = B // parts
        xs = [x[i * per * S:(i + 1) * per * S] for i in range(parts)]
        for st in streams:
            st.wait_stream(main)
        for w in L:
            for i, st in enumerate(streams):
                with torch.cuda.stream(st):
                    xs[i] = layer(xs[i], w, per, S)
        for st in streams:
            main.wait_stream(st)
        return torch.cat(xs)
    return run


t0, ref = time_graph(whole)
rows["whole"] = t0
print(f"{torch.cuda.get_device_name()}: b={B} seq={S} layers={args.layers}: one chain {t0:.1f} us a run ({B / t0 * 1e6:,.0f} seq/s)")
for name, fn in [("2 chains", split(2)), ("2 chains interleaved", interleaved(2)), ("4 chains interleaved", interleaved(4)), ("2 chains sequential (one stream)", None)]:
    if fn is None:
        def fn():
            per = B // 2
            return torch.cat([chain(x[i * per * S:(i + 1) * per * S], per, S) for i in range(2)])
    t, out = time_graph(fn)
    err = (out.float() - ref.float()).abs().max().item()
    rows[name] = t
    print(f"  {name}: {t:.1f} us ({t0 / t:.3f}x), max |diff| {err:.2e}")

# the pieces, whole batch, graph-timed one at a time
xx = torch.randn(B * S, h, device=dev, dtype=torch.half)
f1 = torch.randn(B * S, ffn, device=dev, dtype=torch.half)
w = L[0]
for name, fn in [("lin1", lambda: torch.addmm(w["b1"], xx, w["w1"])), ("gelu pass", lambda: F.gelu(f1)), ("lin2", lambda: torch.addmm(w["b2"], f1, w["w2"])),
                 ("qkv", lambda: torch.addmm(w["bqkv"], xx, w["wqkv"])), ("layernorm", lambda: F.layer_norm(xx, (h,), w["g1"], w["be1"]))]:
    t, _ = time_graph(fn)
    rows[name] = t
    print(f"  piece {name}: {t:.1f} us")
# lin1 of one half beside the GELU pass of the other, on two streams, against the two in turn
half = B * S // 2
fa = torch.empty(half, ffn, device=dev, dtype=torch.half)


def pair(concurrent):
    def run():
        main = torch.cuda.current_stream()
        s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
        s1.wait_stream(main)
        s2.wait_stream(main)
        with torch.cuda.stream(s1):
            a = torch.addmm(w["b1"], xx[:half], w["w1"])
        with torch.cuda.stream(s2 if concurrent else s1):
            g = F.gelu(f1[half:])
        main.wait_stream(s1)
        main.wait_stream(s2)
        return a, g
    return run


for name, conc in [("half lin1 then half GELU pass", False), ("half lin1 beside half GELU pass", True)]:
    t, _ = time_graph(pair(conc))
    rows[name] = t
    print(f"  {name}: {t:.1f} us")
if args.out:
    json.dump(rows, open(args.out, "w"), indent=1)
