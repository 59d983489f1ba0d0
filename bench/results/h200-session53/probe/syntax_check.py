"""Syntax-check wgmma_probe.py's CUDA source for given configs with g++ -fsyntax-only (no GPU, no NVRTC here): CUDA's
keywords and types stubbed, inline PTX dropped. Catches C++ slips (a misspelt helper, a missing brace, an undefined
name) before a device call; PTX and ptxas errors still show only on the device.

    python3 syntax_check.py ../../h200-session52/probe/wgmma_probe.py "256,64,4,1,1,0,0,0,1,0,8,0,132;..."
"""
import subprocess, sys, importlib.util, types
sys.modules['cupy'] = types.ModuleType('cupy')
torch = types.ModuleType('torch'); torch.nn = types.ModuleType('torch.nn'); torch.nn.functional = types.ModuleType('torch.nn.functional')
sys.modules['torch'] = torch; sys.modules['torch.nn'] = torch.nn; sys.modules['torch.nn.functional'] = torch.nn.functional
spec = importlib.util.spec_from_file_location('probe', sys.argv[1]); probe = importlib.util.module_from_spec(spec); spec.loader.exec_module(probe)
STUB = r'''
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __cluster_dims__(...)
#define __shared__
#define __align__(n)
#define __restrict__
struct __half { unsigned short x; };
struct __half2 { __half a, b; };
inline float __half2float(__half) { return 0; }
inline __half2 __floats2half2_rn(float, float) { return {}; }
inline float __low2float(__half2) { return 0; }
inline float __high2float(__half2) { return 0; }
inline void __syncwarp(unsigned = 0xffffffffu) {}
struct dim3_ { unsigned x, y, z; };
extern dim3_ threadIdx, blockIdx, gridDim, blockDim;
inline unsigned long long __cvta_generic_to_shared(const void*) { return 0; }
inline void __syncthreads() {}
#include <cmath>
#include <cstddef>
#include <algorithm>
using std::min; using std::max;
struct uint4 { unsigned x, y, z, w; };
struct float2 { float x, y; };
inline float2 __half22float2(__half2) { return {}; }
#define asm(...) ((void)0)
'''
ok = True
for cfg in sys.argv[2].split(';'):
    f = list(map(int, cfg.split(','))) + [0] * 14
    bn, bk, stages, minb, swz, noload, nomma, act0, ws, midhold, g2, epi, persist, gas = f[:14]
    src = probe.source(bn, bk, stages, minb, swz, noload, nomma, ws, midhold, g2, epi, persist, gas)
    src = src.replace('#include <cuda_fp16.h>', STUB)
    # "asm volatile(...)" -> stub: turn "asm volatile" into "asm"
    src = src.replace('asm volatile', 'asm')
    r = subprocess.run(['g++', '-std=c++17', '-fsyntax-only', '-x', 'c++', '-', '-Wno-unused'], input=src, capture_output=True, text=True)
    if r.returncode:
        ok = False
        print(f'{cfg}: FAILED\n{r.stderr[:3000]}')
    else:
        print(f'{cfg}: ok')
sys.exit(0 if ok else 1)
