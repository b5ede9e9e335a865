/* attach.c -- the event's files step (see attach.h for what and why).
 *
 * One item at a time, in the request's order, each a small chain of
 * callbacks: [record read once] -> retrieve (by id) | lookup (recover) ->
 * upload -> record -> next item.  Sequential on purpose: a message carries
 * at most max_parts + max_attachments items, the API rate-limits uploads
 * anyway, and one call in flight keeps "once per item" easy to reason
 * about (the record of item n is written before item n+1 is touched).
 */
#include "attach.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "be_errors.h"
#include "conv_sched.h"
#include "event.h"
#include "files_api.h"
#include "intake.h"
#include "rkeys.h"
#include "turn.h"

typedef struct item {
  int is_part;       /* 1: parts[idx] (image_file); 0: attachments[idx] */
  size_t idx;
  const char *file_id; /* by id: the id named; NULL: inline */
  const void *data;
  size_t len;
  const char *filename; /* inline: the request's, or NULL (an image without one) */
  const char *media_type;
  char *id;          /* resolved file id (owned) */
} item;

struct wk_att {
  api_client *api;
  rconn *redis;
  char *key;
  long ttl_s;
  char tag[WK_ATT_TAG_MAX];
  int recover;
  const contract_request *q;
  contract_part *parts;
  size_t nparts;
  contract_attachment *atts;
  size_t natts;
  item *items;
  size_t nitems;
  size_t cur;
  int looked;        /* the current item's lookup ran */
  int done;          /* resolved: parts / atts hold the ids */
  fapi_op *op;
  int redis_out;     /* Redis replies still to come (they hold the step) */
  int freed;         /* wk_att_free came while one was out */
  int uploads, reused;
  wk_att_done_cb cb;
  void *opaque;
  char msg[512];
};

static int advance(wk_att *a);

int wk_att_needed(const contract_request *q) {
  if (!q || q->kind != CONTRACT_KIND_MESSAGE) return 0;
  if (q->nattachments) return 1;
  for (size_t i = 0; i < q->nparts; i++)
    if (q->parts[i].type == CONTRACT_PART_IMAGE_FILE) return 1;
  return 0;
}

static const char *image_ext(const char *media_type) {
  if (!media_type) return "bin";
  if (!strncmp(media_type, "image/png", 9)) return "png";
  if (!strncmp(media_type, "image/jpeg", 10)) return "jpg";
  if (!strncmp(media_type, "image/gif", 9)) return "gif";
  if (!strncmp(media_type, "image/webp", 10)) return "webp";
  return "bin";
}

void wk_att_upload_name(const char *name_tag, size_t n, const char *filename, char *out, size_t size) {
  if (!size) return;
  char head[WK_ATT_TAG_MAX + 32];
  int hl = snprintf(head, sizeof head, "%s-%zu-", name_tag ? name_tag : "aw", n);
  if (hl < 0) hl = 0;
  size_t cap = size < FAPI_NAME_MAX ? size : FAPI_NAME_MAX; /* NUL included */
  if ((size_t)hl >= cap) {
    out[0] = '\0';
    return;
  }
  const char *f = filename ? filename : "";
  size_t fl = strlen(f), room = cap - 1 - (size_t)hl;
  if (fl > room) {
    /* Keep the tail: the extension tells the APIs what the file is.  Start
     * at a character, not inside one. */
    f += fl - room;
    while (*f && ((unsigned char)*f & 0xC0) == 0x80) f++;
  }
  snprintf(out, size, "%s%s", head, f);
}

/* ---- the end ------------------------------------------------------------------ */

static void free_all(wk_att *a) {
  for (size_t i = 0; i < a->nitems; i++) free(a->items[i].id);
  free(a->items);
  free(a->parts);
  free(a->atts);
  free(a->key);
  free(a);
}

void wk_att_free(wk_att *a) {
  if (!a) return;
  fapi_cancel(a->op);
  a->op = NULL;
  a->cb = NULL;
  if (a->redis_out > 0) {
    a->freed = 1; /* the reply frees it */
    return;
  }
  free_all(a);
}

static void resolve(wk_att *a) {
  for (size_t i = 0; i < a->nitems; i++) {
    item *it = &a->items[i];
    if (it->is_part) {
      a->parts[it->idx].text = it->id;
      a->parts[it->idx].text_len = strlen(it->id);
    } else {
      a->atts[it->idx].file_id = it->id;
    }
  }
  a->done = 1;
}

/* The step's end: rc AW_OK (all resolved) or the error, the message in
 * a->msg.  The callback is the last thing that touches a. */
static void finish(wk_att *a, int rc) {
  if (rc == AW_OK) {
    resolve(a);
    a->msg[0] = '\0';
  }
  wk_att_done_cb cb = a->cb;
  a->cb = NULL;
  if (!cb) return;
  wk_att_result r = {.err = rc, .errmsg = a->msg, .uploads = a->uploads, .reused = a->reused};
  if (rc == AW_OK) {
    r.parts = a->parts;
    r.nparts = a->nparts;
    r.attachments = a->atts;
    r.nattachments = a->natts;
  }
  cb(a->opaque, &r);
}

/* Go on after a step's I/O: the next item, or the end. */
static void next(wk_att *a) {
  int rc = advance(a);
  if (rc == 1) finish(a, AW_OK);
  else if (rc < 0) finish(a, rc);
}

static void field_name(const item *it, char *out, size_t n) {
  if (it->is_part) snprintf(out, n, "content[%zu].file_id", it->idx);
  else snprintf(out, n, "attachments[%zu].file_id", it->idx);
}

/* ---- the uploads record ------------------------------------------------------- */

/* A reply that arrives after wk_att_free only frees. */
static int redis_back(wk_att *a) {
  a->redis_out--;
  if (!a->freed) return 0;
  if (!a->redis_out) free_all(a);
  return 1;
}

static void on_recorded(void *opaque, int err, redisReply *r) {
  wk_att *a = opaque;
  if (redis_back(a)) return;
  /* Not fatal: a lost record only costs a re-processed event the lookup. */
  if (err || !r || r->type == REDIS_REPLY_ERROR) log_warn(NULL, "files: could not record an upload in redis");
  a->cur++;
  a->looked = 0;
  next(a);
}

/* The item's id is known: record it (inline items only), then next. */
static void item_resolved(wk_att *a, item *it, const char *id, int record) {
  free(it->id);
  it->id = strdup(id);
  if (!it->id) {
    snprintf(a->msg, sizeof a->msg, "out of memory");
    finish(a, AW_ENOMEM);
    return;
  }
  if (record && a->redis && a->key) {
    char field[32], ttl[32];
    snprintf(field, sizeof field, "%zu", (size_t)(it - a->items));
    snprintf(ttl, sizeof ttl, "%ld", a->ttl_s > 0 ? a->ttl_s : 7L * 24 * 3600);
    static const char script[] = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
                                 "return redis.call('EXPIRE', KEYS[1], ARGV[3])\n";
    const char *argv[] = {"EVAL", script, "1", a->key, field, it->id, ttl};
    size_t lens[7];
    for (int i = 0; i < 7; i++) lens[i] = strlen(argv[i]);
    if (rconn_commandargv(a->redis, on_recorded, a, 7, argv, lens) == AW_OK) {
      a->redis_out++;
      return;
    }
    log_warn(NULL, "files: could not record an upload in redis");
  }
  a->cur++;
  a->looked = 0;
  next(a);
}

static void on_record_read(void *opaque, int err, redisReply *r) {
  wk_att *a = opaque;
  if (redis_back(a)) return;
  if (err || !r || r->type != REDIS_REPLY_ARRAY) {
    /* Without the record the lookup by name still finds earlier uploads
     * of a re-processed event. */
    log_warn(NULL, "files: could not read the event's uploads record");
  } else {
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
      const redisReply *f = r->element[i], *v = r->element[i + 1];
      if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || !v->len || v->len >= API_ID_MAX) continue;
      char *end = NULL;
      unsigned long n = strtoul(f->str, &end, 10);
      if (!end || *end || n >= a->nitems || a->items[n].file_id || a->items[n].id) continue;
      a->items[n].id = strndup(v->str, v->len);
      if (a->items[n].id) a->reused++;
    }
  }
  next(a);
}

/* ---- one item ------------------------------------------------------------------ */

static void on_retrieved(void *opaque, const fapi_result *res) {
  wk_att *a = opaque;
  a->op = NULL;
  item *it = &a->items[a->cur];
  if (res->err) {
    char field[48];
    field_name(it, field, sizeof field);
    if (res->err == AW_ENOTFOUND)
      snprintf(a->msg, sizeof a->msg, "%s '%s' does not exist", field, it->file_id);
    else
      snprintf(a->msg, sizeof a->msg, "%s '%s': %s", field, it->file_id, res->errmsg ? res->errmsg : "");
    finish(a, res->err);
    return;
  }
  item_resolved(a, it, it->file_id, 0);
}

static void on_uploaded(void *opaque, const fapi_result *res) {
  wk_att *a = opaque;
  a->op = NULL;
  item *it = &a->items[a->cur];
  a->uploads += res->uploads;
  if (res->err || !res->file) {
    snprintf(a->msg, sizeof a->msg, "%s[%zu]: the upload failed: %s", it->is_part ? "content" : "attachments",
             it->idx, res->errmsg && *res->errmsg ? res->errmsg : aw_strerror(res->err));
    finish(a, res->err ? res->err : AW_EPARSE);
    return;
  }
  if (res->found) a->reused++;
  item_resolved(a, it, res->file->id, 1);
}

static int upload(wk_att *a, item *it) {
  char name[FAPI_NAME_MAX], gen[48];
  const char *fn = it->filename;
  if (!fn || !*fn) {
    snprintf(gen, sizeof gen, "image-%zu.%s", it->idx, image_ext(it->media_type));
    fn = gen;
  }
  wk_att_upload_name(a->tag, a->cur, fn, name, sizeof name);
  fapi_upload_opts o;
  fapi_upload_opts_default(&o);
  o.filename = name;
  o.purpose = it->is_part ? "vision" : "assistants";
  o.type = it->media_type;
  o.data = it->data;
  o.len = it->len;
  return fapi_upload(a->api, &o, on_uploaded, a, &a->op);
}

/* The lookup of a re-processed event: its upload by name and size, newest
 * first; else upload. */
static void on_listed(void *opaque, const fapi_result *res) {
  wk_att *a = opaque;
  a->op = NULL;
  item *it = &a->items[a->cur];
  a->looked = 1;
  if (!res->err) {
    char name[FAPI_NAME_MAX], gen[48];
    const char *fn = it->filename;
    if (!fn || !*fn) {
      snprintf(gen, sizeof gen, "image-%zu.%s", it->idx, image_ext(it->media_type));
      fn = gen;
    }
    wk_att_upload_name(a->tag, a->cur, fn, name, sizeof name);
    const cJSON *x, *data = cJSON_GetObjectItemCaseSensitive(res->json, "data");
    cJSON_ArrayForEach(x, data) {
      fapi_file f;
      if (fapi_file_parse(x, &f) != AW_OK) continue;
      if (strcmp(f.filename, name) == 0 && f.bytes == (long long)it->len) {
        a->reused++;
        item_resolved(a, it, f.id, 1);
        return;
      }
    }
  } else {
    /* The lookup is a safeguard: without it, upload (the record is what
     * normally prevents a second upload). */
    log_warn(NULL, "files: could not list files to look for an earlier upload: %s", res->errmsg);
  }
  int rc = upload(a, it);
  if (rc) {
    snprintf(a->msg, sizeof a->msg, "could not start an upload: %s", aw_strerror(rc));
    finish(a, rc);
  }
}

/* Start the I/O of the next item that needs any: AW_OK (a callback
 * follows), 1 (nothing left: resolved), or a negative error with a->msg. */
static int advance(wk_att *a) {
  while (a->cur < a->nitems) {
    item *it = &a->items[a->cur];
    int rc;
    if (it->file_id) {
      rc = fapi_retrieve(a->api, it->file_id, on_retrieved, a, &a->op);
      if (rc == AW_EINVAL) { /* not an id the API could have made */
        char field[48];
        field_name(it, field, sizeof field);
        snprintf(a->msg, sizeof a->msg, "%s '%s' does not exist", field, it->file_id);
        return AW_ENOTFOUND;
      }
    } else if (it->id) {
      a->cur++; /* uploaded by an earlier attempt: its record says so */
      continue;
    } else if (a->recover && !a->looked) {
      rc = fapi_list(a->api, it->is_part ? "vision" : "assistants", WK_ATT_LOOKUP_LIMIT, "desc", NULL, on_listed, a,
                     &a->op);
    } else {
      rc = upload(a, it);
    }
    if (rc) snprintf(a->msg, sizeof a->msg, "could not start a files API call: %s", aw_strerror(rc));
    return rc;
  }
  return 1;
}

/* ---- start ---------------------------------------------------------------------- */

static int add_items(wk_att *a, const contract_request *q) {
  size_t n = q->nattachments;
  for (size_t i = 0; i < q->nparts; i++) n += q->parts[i].type == CONTRACT_PART_IMAGE_FILE;
  if (!n) return AW_EINVAL;
  a->items = calloc(n, sizeof *a->items);
  a->parts = calloc(q->nparts ? q->nparts : 1, sizeof *a->parts);
  a->atts = calloc(q->nattachments ? q->nattachments : 1, sizeof *a->atts);
  if (!a->items || !a->parts || !a->atts) return AW_ENOMEM;
  if (q->nparts) memcpy(a->parts, q->parts, q->nparts * sizeof *a->parts);
  if (q->nattachments) memcpy(a->atts, q->attachments, q->nattachments * sizeof *a->atts);
  a->nparts = q->nparts;
  a->natts = q->nattachments;
  for (size_t i = 0; i < q->nparts; i++) {
    const contract_part *p = &q->parts[i];
    if (p->type != CONTRACT_PART_IMAGE_FILE) continue;
    item *it = &a->items[a->nitems++];
    it->is_part = 1;
    it->idx = i;
    it->file_id = p->data ? NULL : p->text;
    it->data = p->data;
    it->len = p->data_len;
    it->filename = p->filename;
    it->media_type = p->media_type;
  }
  for (size_t i = 0; i < q->nattachments; i++) {
    const contract_attachment *t = &q->attachments[i];
    item *it = &a->items[a->nitems++];
    it->idx = i;
    it->file_id = t->data ? NULL : t->file_id;
    it->data = t->data;
    it->len = t->data_len;
    it->filename = t->filename;
    it->media_type = t->media_type;
  }
  for (size_t i = 0; i < a->nitems; i++)
    if (!a->items[i].file_id && (!a->items[i].data || !a->items[i].len)) return AW_EINVAL;
  return AW_OK;
}

int wk_att_start(const wk_att_config *cfg, const contract_request *q, wk_att_done_cb cb, void *opaque,
                 wk_att **out, char *errstr, size_t errstr_size) {
  if (errstr && errstr_size) errstr[0] = '\0';
  *out = NULL;
  if (!cfg || !cfg->api || !cfg->name_tag || !q || !cb) return AW_EINVAL;
  wk_att *a = calloc(1, sizeof *a);
  if (!a) return AW_ENOMEM;
  a->api = cfg->api;
  a->redis = cfg->redis;
  a->ttl_s = cfg->record_ttl_s;
  a->recover = cfg->recover;
  a->q = q;
  a->cb = cb;
  a->opaque = opaque;
  snprintf(a->tag, sizeof a->tag, "%s", cfg->name_tag);
  int rc = add_items(a, q);
  if (!rc && cfg->redis && cfg->record_key && !(a->key = strdup(cfg->record_key))) rc = AW_ENOMEM;
  if (rc) {
    free_all(a);
    return rc;
  }
  int inline_items = 0;
  for (size_t i = 0; i < a->nitems; i++) inline_items += !a->items[i].file_id;
  if (inline_items && a->redis && a->key) {
    const char *argv[] = {"HGETALL", a->key};
    size_t lens[] = {7, strlen(a->key)};
    if (rconn_commandargv(a->redis, on_record_read, a, 2, argv, lens) == AW_OK) {
      a->redis_out++;
      *out = a;
      return AW_OK;
    }
    log_warn(NULL, "files: could not read the event's uploads record");
  }
  rc = advance(a);
  if (rc != AW_OK) { /* nothing is pending: a has nothing to finish */
    if (errstr && errstr_size) snprintf(errstr, errstr_size, "%s", a->msg);
    free_all(a);
    return rc == 1 ? AW_EINVAL : rc;
  }
  *out = a;
  return AW_OK;
}

const contract_part *wk_att_parts(const wk_att *a, size_t *n) {
  *n = a && a->done ? a->nparts : 0;
  return a && a->done ? a->parts : NULL;
}

const contract_attachment *wk_att_attachments(const wk_att *a, size_t *n) {
  *n = a && a->done ? a->natts : 0;
  return a && a->done ? a->atts : NULL;
}

/* ---- the event machine's side ---------------------------------------------------- */

static void att_done(void *opaque, const wk_att_result *res) {
  wk_event *ev = opaque;
  wk *w = ev->w;
  log_ctx c = wk_ev_ctx(ev);
  if (res->err == AW_OK) {
    if (res->uploads || res->reused)
      log_info(&c, "files: %d uploaded, %d found from an earlier attempt", res->uploads, res->reused);
    wk_ev_release_original(ev);
    wk_ev_set_state(ev, ST_TURN);
    ev->att_then(ev);
    return;
  }
  switch (aw_error_classify(res->err)) {
  case AW_CLASS_REJECT:
    wk_ev_reject_now(ev, res->err == AW_ENOTFOUND ? "file_not_found" : "invalid_field", res->errmsg);
    return;
  case AW_CLASS_FATAL:
    log_error(&c, "files: an error that stops the worker: %s", res->errmsg);
    wk_ev_abandon(ev);
    if (w->cfg.on_fatal) w->cfg.on_fatal(w->cfg.fatal_opaque);
    return;
  default:
    log_warn(&c, "files: %s; trying again later", res->errmsg);
    wks_retry_later(ev);
    return;
  }
}

void wk_att_step(wk_event *ev, void (*then)(wk_event *ev)) {
  wk *w = ev->w;
  wk_ev_set_state(ev, ST_FILES);
  wk_att_free(ev->att); /* a retry starts again (its record keeps the uploads) */
  ev->att = NULL;
  ev->att_then = then;
  char key[RK_KEY_MAX], tag[WK_ATT_TAG_MAX];
  int have_key = rk_conv_key(&w->store.keys, ev->conv_ref, RK_UPLOADS, ev->event_id, key, sizeof key) == AW_OK;
  snprintf(tag, sizeof tag, "aw-%.8s", ev->turn_token[0] ? ev->turn_token : "00000000");
  wk_att_config cfg = {.api = w->cfg.files_api,
                       .redis = have_key ? w->redis : NULL,
                       .record_key = have_key ? key : NULL,
                       .record_ttl_s = w->cfg.outcome_ttl_s,
                       .name_tag = tag,
                       .recover = ev->recover};
  char msg[512];
  int rc = wk_att_start(&cfg, ev->req, att_done, ev, &ev->att, msg, sizeof msg);
  if (rc == AW_OK) return;
  if (!msg[0]) snprintf(msg, sizeof msg, "files: %s", aw_strerror(rc));
  wk_att_result r = {.err = rc, .errmsg = msg};
  att_done(ev, &r);
}
