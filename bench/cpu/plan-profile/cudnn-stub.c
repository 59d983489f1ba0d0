// A stand-in for libcudnn.so.9 for CPU-side profiling of the plan builder only: descriptors are heap blocks, every
// query succeeds, the heuristics offer algorithm 1 with tensor-op math and no workspace. Nothing runs.
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
typedef struct { int algo, status; float time; size_t memory; int determinism, mathType, r0, r1, r2; } perf_t;
static int mk(void **d) { *d = calloc(1, 256); return 0; }
static int rm(void *d) { free(d); return 0; }
size_t cudnnGetVersion(void) { return 91400; }
const char *cudnnGetErrorString(int s) { return "stub"; }
void cudnnGetLastErrorString(char *m, size_t n) { if (n) m[0] = 0; }
int cudnnCreate(void **h) { return mk(h); }
int cudnnDestroy(void *h) { return rm(h); }
int cudnnSetStream(void *h, void *s) { return 0; }
int cudnnGetStream(void *h, void **s) { *s = 0; return 0; }
int cudnnCreateTensorDescriptor(void **d) { return mk(d); }
int cudnnDestroyTensorDescriptor(void *d) { return rm(d); }
int cudnnSetTensorNdDescriptor(void *d, int t, int n, int *dims, int *strides) { memcpy(d, dims, n * sizeof(int)); return 0; }
int cudnnSetTensorNdDescriptorEx(void *d, int f, int t, int n, int *dims) { return 0; }
int cudnnCreateFilterDescriptor(void **d) { return mk(d); }
int cudnnDestroyFilterDescriptor(void *d) { return rm(d); }
int cudnnSetFilterNdDescriptor(void *d, int t, int f, int n, int *dims) { memcpy(d, dims, n * sizeof(int)); return 0; }
int cudnnCreateConvolutionDescriptor(void **d) { return mk(d); }
int cudnnDestroyConvolutionDescriptor(void *d) { return rm(d); }
int cudnnSetConvolutionNdDescriptor(void *d, int n, int *p, int *s, int *dl, int m, int c) { return 0; }
int cudnnSetConvolutionGroupCount(void *d, int g) { return 0; }
int cudnnSetConvolutionMathType(void *d, int m) { return 0; }
int cudnnGetConvolutionNdForwardOutputDim(void *c, void *x, void *w, int n, int *dims) { return 1; }
int cudnnGetConvolutionForwardAlgorithm_v7(void *h, void *x, void *w, void *c, void *y, int req, int *ret, perf_t *r) {
  memset(r, 0, sizeof(perf_t)); r[0].algo = 1; r[0].mathType = 1; r[0].determinism = 1; *ret = 1; return 0; }
int cudnnGetConvolutionForwardWorkspaceSize(void *h, void *x, void *w, void *c, void *y, int a, size_t *b) { *b = 0; return 0; }
int cudnnConvolutionForward() { return 0; }
int cudnnGetConvolutionBackwardDataAlgorithm_v7(void *h, void *w, void *dy, void *c, void *dx, int req, int *ret, perf_t *r) {
  memset(r, 0, sizeof(perf_t)); r[0].algo = 1; r[0].mathType = 1; *ret = 1; return 0; }
int cudnnGetConvolutionBackwardDataWorkspaceSize(void *h, void *w, void *dy, void *c, void *dx, int a, size_t *b) { *b = 0; return 0; }
int cudnnConvolutionBackwardData() { return 0; }
int cudnnCreateActivationDescriptor(void **d) { return mk(d); }
int cudnnDestroyActivationDescriptor(void *d) { return rm(d); }
int cudnnSetActivationDescriptor(void *d, int m, int n, double c) { return 0; }
int cudnnConvolutionBiasActivationForward() { return 0; }
int cudnnAddTensor() { return 0; }
int cudnnBackendCreateDescriptor(int t, void **d) { return mk(d); }
int cudnnBackendDestroyDescriptor(void *d) { return rm(d); }
int cudnnBackendFinalize(void *d) { return 0; }
int cudnnBackendSetAttribute() { return 0; }
int cudnnBackendGetAttribute() { return 9; }
int cudnnBackendExecute() { return 0; }
