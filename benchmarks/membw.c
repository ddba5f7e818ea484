/* Measures this machine's memory read bandwidth: THREADS pthreads each sum
 * their own part of a SIZE_MIB buffer (first-touched by that thread), REPS
 * times; prints the best and median GB/s (decimal GB) of all threads
 * together.
 *
 * Build: gcc -O3 -march=native -pthread membw.c -o membw
 * Usage: membw [THREADS=2] [SIZE_MIB=1024] [REPS=10]   (MEMBW_VERBOSE=1: every rep)
 * Output (last line, parsed by run.sh):
 *   membw: threads 2, buffer 1024 MiB, reps 10: best X GB/s, median Y GB/s
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  uint64_t *data;
  size_t words;
  pthread_barrier_t *barrier;
  int reps;
  uint64_t sink;
} worker;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


static uint64_t sum(const uint64_t *p, size_t n) {
  /* Eight independent accumulators; gcc vectorises this at -O3. */
  uint64_t s[8] = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j)
      s[j] += p[i + j];
  for (; i < n; ++i)
    s[0] += p[i];
  uint64_t t = 0;
  for (int j = 0; j < 8; ++j)
    t += s[j];
  return t;
}

static void *run(void *arg) {
  worker *w = arg;
  for (size_t i = 0; i < w->words; ++i) /* first touch: local pages */
    w->data[i] = i * 0x9E3779B97F4A7C15ull;
  for (int r = 0; r < w->reps + 1; ++r) { /* rep 0 is a warm-up */
    pthread_barrier_wait(w->barrier); /* start: main thread reads clock */
    w->sink += sum(w->data, w->words);
    pthread_barrier_wait(w->barrier); /* end */
  }
  return NULL;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
  int reps = argc > 3 ? atoi(argv[3]) : 10;
  if (threads < 1 || mib < 1 || reps < 1) {
    fprintf(stderr, "usage: membw [THREADS] [SIZE_MIB] [REPS]\n");
    return 2;
  }
  size_t bytes = mib << 20;
  size_t words = bytes / sizeof(uint64_t);
  uint64_t *buf = aligned_alloc(4096, bytes);
  if (!buf) {
    perror("aligned_alloc");
    return 1;
  }
  pthread_barrier_t barrier;
  /* The main thread joins the barrier to take the time of each rep. */
  pthread_barrier_init(&barrier, NULL, (unsigned)threads + 1);
  worker *ws = calloc((size_t)threads, sizeof(worker));
  pthread_t *tids = calloc((size_t)threads, sizeof(pthread_t));
  double *seconds = calloc((size_t)reps, sizeof(double));
  size_t per = words / (size_t)threads;
  for (int t = 0; t < threads; ++t) {
    ws[t].data = buf + (size_t)t * per;
    ws[t].words = t == threads - 1 ? words - (size_t)t * per : per;
    ws[t].barrier = &barrier;
    ws[t].reps = reps;
    pthread_create(&tids[t], NULL, run, &ws[t]);
  }
  for (int r = 0; r < reps + 1; ++r) {
    pthread_barrier_wait(&barrier);
    double t0 = now();
    pthread_barrier_wait(&barrier);
    if (r > 0)
      seconds[r - 1] = now() - t0;
  }
  uint64_t sink = 0;
  for (int t = 0; t < threads; ++t) {
    pthread_join(tids[t], NULL);
    sink += ws[t].sink;
  }
  if (getenv("MEMBW_VERBOSE"))
    for (int r = 0; r < reps; ++r)
      fprintf(stderr, "rep %d: %.2f GB/s\n", r, (double)bytes / seconds[r] / 1e9);
  qsort(seconds, (size_t)reps, sizeof(double), cmp);
  double best = (double)bytes / seconds[0] / 1e9;
  double median = (double)bytes / seconds[reps / 2] / 1e9;
  printf("membw: threads %d, buffer %zu MiB, reps %d: best %.2f GB/s, "
         "median %.2f GB/s (checksum %llx)\n",
         threads, mib, reps, best, median, (unsigned long long)(sink & 0xff));
  free(buf);
  return 0;
}
