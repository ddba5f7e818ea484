/* Measures the peak rate of the instructions our CPU kernels are built on,
 * THREADS pthreads each running 12 independent accumulator chains of one
 * 512-bit instruction in registers (no memory traffic), REPS times:
 *
 *   fma    vfmadd231ps   16 f32 multiply-adds    = 32 FLOP per instruction
 *   bf16   vdpbf16ps     32 bf16 products summed = 64 FLOP (AVX512_BF16)
 *   vnni   vpdpbusd      64 u8 x s8 products     = 128 OP  (AVX512_VNNI)
 *
 * This is the "measured peak of the instruction used" that the benchmarks'
 * roofline columns divide by: a GEMM kernel cannot beat it, unlike a
 * library GEMM taken as the reference. Twelve chains cover the latency
 * (4-5 cycles) of two pipes.
 *
 * Build: gcc -O2 -march=native -pthread peak.c -o peak
 * Usage: peak [THREADS=2] [REPS=5]
 * Output (one line per instruction the CPU has; parsed by the benchmarks):
 *   peak fma: threads 2: best X GFLOP/s, median Y GFLOP/s
 *   (GOP/s for vnni)
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { kChains = 12 };
/* Instructions per chain per rep: about 0.1-0.2 s per rep at 2-4 GHz. */
static const long kSteps = 20 * 1000 * 1000;

typedef struct {
  const char *kind;
  pthread_barrier_t *barrier;
  int reps;
  double *seconds; /* per rep, written by thread 0 */
  float sink;
} worker;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The chains start from values the compiler cannot see, and their sum is
 * kept, so that no instruction is folded away. */
__attribute__((target("avx512f"))) static float runFma(float seed) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i)
    acc[i] = _mm512_set1_ps(seed + (float)i);
  __m512 x = _mm512_set1_ps(1.0f - seed * 1e-9f), y = _mm512_set1_ps(seed);
  for (long s = 0; s < kSteps; ++s)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i)
      acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  float total = 0;
  for (int i = 0; i < kChains; ++i)
    total += _mm512_reduce_add_ps(acc[i]);
  return total;
}

__attribute__((target("avx512f,avx512bf16"))) static float runBf16(float seed) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i)
    acc[i] = _mm512_set1_ps(seed + (float)i);
  __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(seed), _mm512_set1_ps(1));
  for (long s = 0; s < kSteps; ++s)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i)
      acc[i] = _mm512_dpbf16_ps(acc[i], x, x);
  float total = 0;
  for (int i = 0; i < kChains; ++i)
    total += _mm512_reduce_add_ps(acc[i]);
  return total;
}

__attribute__((target("avx512f,avx512vnni"))) static float runVnni(float seed) {
  __m512i acc[kChains];
  for (int i = 0; i < kChains; ++i)
    acc[i] = _mm512_set1_epi32((int)seed + i);
  __m512i x = _mm512_set1_epi8((char)seed), y = _mm512_set1_epi8(3);
  for (long s = 0; s < kSteps; ++s)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i)
      acc[i] = _mm512_dpbusd_epi32(acc[i], x, y);
  int total = 0;
  for (int i = 0; i < kChains; ++i)
    total += _mm512_reduce_add_epi32(acc[i]);
  return (float)total;
}

/* Operations per instruction (FLOP, or int8 multiply-adds counted as two
 * OP like FLOP). */
static double opsPerInstruction(const char *kind) {
  return kind[0] == 'f' ? 32 : kind[0] == 'b' ? 64 : 128;
}

static void *run(void *arg) {
  worker *w = arg;
  for (int r = 0; r < w->reps; ++r) {
    pthread_barrier_wait(w->barrier);
    double start = now();
    float seed = (float)(r + 2);
    w->sink += w->kind[0] == 'f'   ? runFma(seed)
               : w->kind[0] == 'b' ? runBf16(seed)
                                   : runVnni(seed);
    pthread_barrier_wait(w->barrier);
    if (w->seconds)
      w->seconds[r] = now() - start;
  }
  return NULL;
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int measure(const char *kind, int threads, int reps) {
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, (unsigned)threads);
  pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
  worker *workers = calloc((size_t)threads, sizeof(worker));
  double *seconds = calloc((size_t)reps, sizeof(double));
  if (!ids || !workers || !seconds) {
    fprintf(stderr, "peak: out of memory\n");
    return 1;
  }
  for (int t = 0; t < threads; ++t) {
    workers[t] = (worker){kind, &barrier, reps, t == 0 ? seconds : NULL, 0};
    if (pthread_create(&ids[t], NULL, run, &workers[t])) {
      fprintf(stderr, "peak: cannot start thread %d\n", t);
      return 1;
    }
  }
  float sink = 0;
  for (int t = 0; t < threads; ++t) {
    pthread_join(ids[t], NULL);
    sink += workers[t].sink;
  }
  qsort(seconds, (size_t)reps, sizeof(double), compare);
  double ops = opsPerInstruction(kind) * kChains * (double)kSteps * threads;
  const char *unit = kind[0] == 'v' ? "GOP/s" : "GFLOP/s";
  printf("peak %s: threads %d: best %.1f %s, median %.1f %s%s\n", kind,
         threads, ops / seconds[0] / 1e9, unit, ops / seconds[reps / 2] / 1e9,
         unit, sink == 12345.0f ? " " : "");
  free(seconds);
  free(workers);
  free(ids);
  pthread_barrier_destroy(&barrier);
  return 0;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  if (threads < 1 || reps < 1) {
    fprintf(stderr, "usage: peak [THREADS>=1] [REPS>=1]\n");
    return 2;
  }
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) {
    fprintf(stderr, "peak: this CPU has no AVX-512F; nothing to measure\n");
    return 1;
  }
  int status = measure("fma", threads, reps);
  if (!status && __builtin_cpu_supports("avx512bf16"))
    status = measure("bf16", threads, reps);
  if (!status && __builtin_cpu_supports("avx512vnni"))
    status = measure("vnni", threads, reps);
  return status;
}
