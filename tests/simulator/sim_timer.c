/* sim_timer.c -- min-heap timer thread. */
#include "sim_timer.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef struct entry {
  int64_t due;
  uint64_t seq; /* FIFO among equal due times keeps stream events in order */
  stimer_fn fn;
  void *arg;
} entry;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static entry *g_heap;
static size_t g_n, g_max;
static uint64_t g_seq;
static int g_draining, g_stopping, g_running;
static pthread_t g_thr;

int64_t stimer_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int before(const entry *a, const entry *b) {
  return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void sift_up(size_t i) {
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!before(&g_heap[i], &g_heap[p])) break;
    entry t = g_heap[i];
    g_heap[i] = g_heap[p];
    g_heap[p] = t;
    i = p;
  }
}

static void sift_down(size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < g_n && before(&g_heap[l], &g_heap[m])) m = l;
    if (r < g_n && before(&g_heap[r], &g_heap[m])) m = r;
    if (m == i) return;
    entry t = g_heap[i];
    g_heap[i] = g_heap[m];
    g_heap[m] = t;
    i = m;
  }
}

static entry pop(void) {
  entry e = g_heap[0];
  g_heap[0] = g_heap[--g_n];
  if (g_n) sift_down(0);
  return e;
}

static void *run(void *unused) {
  (void)unused;
  pthread_mutex_lock(&g_mu);
  for (;;) {
    if (g_stopping) break;
    if (!g_n) {
      pthread_cond_wait(&g_cv, &g_mu);
      continue;
    }
    int64_t now = stimer_now_ms();
    if (!g_draining && g_heap[0].due > now) {
      int64_t due = g_heap[0].due;
      struct timespec ts = {.tv_sec = due / 1000, .tv_nsec = (due % 1000) * 1000000};
      pthread_cond_timedwait(&g_cv, &g_mu, &ts);
      continue;
    }
    entry e = pop();
    int drain = g_draining;
    /* Callbacks take other locks (the store, MHD's): never hold ours. */
    pthread_mutex_unlock(&g_mu);
    e.fn(e.arg, drain);
    pthread_mutex_lock(&g_mu);
  }
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

int stimer_start(size_t max_entries) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g_cv, &ca);
  pthread_condattr_destroy(&ca);
  g_heap = calloc(max_entries, sizeof *g_heap);
  if (!g_heap) return AW_ENOMEM;
  g_max = max_entries;
  if (pthread_create(&g_thr, NULL, run, NULL) != 0) return AW_EFATAL;
  g_running = 1;
  return AW_OK;
}

int stimer_add(int64_t due_ms, stimer_fn fn, void *arg) {
  pthread_mutex_lock(&g_mu);
  if (!g_running || g_stopping) {
    pthread_mutex_unlock(&g_mu);
    return AW_ESTATE;
  }
  if (g_n == g_max) {
    pthread_mutex_unlock(&g_mu);
    return AW_ETOOBIG;
  }
  g_heap[g_n] = (entry){.due = due_ms, .seq = g_seq++, .fn = fn, .arg = arg};
  sift_up(g_n++);
  /* Wake the thread only when the earliest deadline changed. */
  if (g_heap[0].seq == g_seq - 1 || g_draining) pthread_cond_signal(&g_cv);
  pthread_mutex_unlock(&g_mu);
  return AW_OK;
}

void stimer_drain(void) {
  pthread_mutex_lock(&g_mu);
  g_draining = 1;
  pthread_cond_signal(&g_cv);
  pthread_mutex_unlock(&g_mu);
}

size_t stimer_pending(void) {
  pthread_mutex_lock(&g_mu);
  size_t n = g_n;
  pthread_mutex_unlock(&g_mu);
  return n;
}

void stimer_stop(void) {
  if (!g_running) return;
  pthread_mutex_lock(&g_mu);
  g_stopping = 1;
  pthread_cond_signal(&g_cv);
  pthread_mutex_unlock(&g_mu);
  pthread_join(g_thr, NULL);
  g_running = 0;
  while (g_n) {
    entry e = pop();
    e.fn(e.arg, 1);
  }
  free(g_heap);
  g_heap = NULL;
}
