/* part_table.c -- per-partition bookkeeping shared by the worker's two
 * consumers (see the header for why it is one module). */
#include "part_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

ptab_part *ptab_get(ptab *pt, int32_t p) {
  if (p < 0) return NULL;
  if (p >= pt->n) {
    int n = p + 1;
    ptab_part *np = realloc(pt->v, (size_t)n * sizeof *np);
    if (!np) return NULL;
    for (int i = pt->n; i < n; i++) {
      memset(&np[i], 0, sizeof np[i]);
      otrk_init(&np[i].t);
      np[i].committed_at_assign = -1;
    }
    pt->v = np;
    pt->n = n;
  }
  return &pt->v[p];
}

ptab_part *ptab_current(const ptab *pt, int32_t p, uint64_t gen) {
  ptab_part *e = p >= 0 && p < pt->n ? &pt->v[p] : NULL;
  return e && e->assigned && e->gen == gen ? e : NULL;
}

const char *ptab_state_name(ptab_state s) {
  switch (s) {
  case PTAB_UNASSIGNED: return "unassigned";
  case PTAB_STARTING: return "starting";
  case PTAB_ACTIVE: return "active";
  }
  return "?";
}

void ptab_set_state(ptab *pt, int32_t p, ptab_state to, const char *why) {
  ptab_part *e = p >= 0 && p < pt->n ? &pt->v[p] : NULL;
  if (!e) return;
  ptab_state from = e->state;
  e->state = to;
  e->assigned = to != PTAB_UNASSIGNED;
  if (log_enabled(LOG_DEBUG)) {
    char n[16], g[24];
    snprintf(n, sizeof n, "%d", (int)p);
    snprintf(g, sizeof g, "%llu", (unsigned long long)e->gen);
    const char *kv[] = {"partition", n, "generation", g, "from", ptab_state_name(from),
                        "to", ptab_state_name(to), "why", why ? why : ""};
    log_writekv(LOG_DEBUG, NULL, "partition state", kv, 5);
  }
}

/* Both directions reset the same way: what was tracked belongs to the old
 * generation, whose work finishes without touching the new one. */
static void reset(ptab *pt, int32_t n, ptab_state to, const char *why) {
  ptab_part *p = &pt->v[n];
  otrk_free(&p->t);
  otrk_skip_free(&p->skip);
  p->gen++;
  p->running = 0;
  p->paused = 0;
  p->committed_at_assign = -1;
  ptab_set_state(pt, n, to, why);
}

static void assign(ptab *pt, const rd_kafka_topic_partition_list_t *parts, ptab_state to) {
  for (int i = 0; i < parts->cnt; i++) {
    int32_t n = parts->elems[i].partition;
    if (ptab_get(pt, n)) reset(pt, n, to, "assigned");
  }
}

void ptab_assign(ptab *pt, const rd_kafka_topic_partition_list_t *parts) { assign(pt, parts, PTAB_ACTIVE); }

void ptab_assign_starting(ptab *pt, const rd_kafka_topic_partition_list_t *parts) {
  assign(pt, parts, PTAB_STARTING);
}

void ptab_revoke(ptab *pt, const rd_kafka_topic_partition_list_t *parts) {
  for (int i = 0; i < parts->cnt; i++) {
    int32_t n = parts->elems[i].partition;
    if (n >= 0 && n < pt->n) reset(pt, n, PTAB_UNASSIGNED, "revoked");
  }
}

int ptab_start(ptab *pt, int32_t p, uint64_t gen, int64_t committed, const void *md, size_t mdlen) {
  ptab_part *e = ptab_current(pt, p, gen);
  if (!e || e->state != PTAB_STARTING) return AW_ESTATE;
  int rc = AW_OK;
  e->committed_at_assign = committed >= 0 ? committed : -1;
  otrk_skip_free(&e->skip);
  if (committed >= 0 && md && mdlen && otrk_skip_parse(&e->skip, committed, md, mdlen) != AW_OK) rc = AW_EPARSE;
  ptab_set_state(pt, p, PTAB_ACTIVE, rc == AW_OK ? "start known" : "start known, metadata unreadable");
  return rc;
}

int ptab_commit(ptab *pt, kc *c, const char *topic, int sync) {
  rd_kafka_topic_partition_list_t *l = NULL;
  for (int i = 0; i < pt->n; i++) {
    int64_t off;
    if (!pt->v[i].assigned || !otrk_take_commit(&pt->v[i].t, &off)) continue;
    if (!l) l = rd_kafka_topic_partition_list_new(8);
    rd_kafka_topic_partition_list_add(l, topic, i)->offset = off;
  }
  if (!l) return AW_OK;
  int rc = kc_commit(c, l, !sync);
  rd_kafka_topic_partition_list_destroy(l);
  return rc;
}

int ptab_commit_notify(ptab *pt, kc *c, const char *topic, kc_commit_done_fn done, void *opaque) {
  rd_kafka_topic_partition_list_t *l = NULL;
  for (int i = 0; i < pt->n; i++) {
    int64_t off;
    if (!pt->v[i].assigned || !otrk_take_commit(&pt->v[i].t, &off)) continue;
    if (!l) l = rd_kafka_topic_partition_list_new(8);
    rd_kafka_topic_partition_list_add(l, topic, i)->offset = off;
  }
  if (!l) return AW_ENOTFOUND;
  int rc = kc_commit_notify(c, l, done, opaque);
  rd_kafka_topic_partition_list_destroy(l);
  return rc;
}

void ptab_log(const char *what, const char *topic, const rd_kafka_topic_partition_list_t *parts) {
  char list[1024], n[16];
  size_t k = 0;
  list[0] = '\0';
  for (int i = 0; i < parts->cnt && k + 12 < sizeof list; i++)
    k += (size_t)snprintf(list + k, sizeof list - k, "%s%d", i ? "," : "", (int)parts->elems[i].partition);
  snprintf(n, sizeof n, "%d", parts->cnt);
  const char *kv[] = {"count", n, "topic", topic, "partitions", list};
  log_writekv(LOG_INFO, NULL, what, kv, 3);
}

void ptab_free(ptab *pt) {
  for (int i = 0; i < pt->n; i++) {
    otrk_free(&pt->v[i].t);
    otrk_skip_free(&pt->v[i].skip);
  }
  free(pt->v);
  pt->v = NULL;
  pt->n = 0;
}
