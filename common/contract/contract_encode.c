/* contract_encode.c -- the contract's encoders (contract.h): requests of
 * every kind (the CLI and tests), responses, deltas and dead letters.
 *
 * Cut from contract.c, which keeps the request decoder: the two share no
 * code (the decoder reads with msgpack_util's scanner and msgpack-c's
 * unpacker, the encoders write with msgpack-c's packer through the helpers
 * below), and each is easier to read and to fuzz alone.
 *  - Encoders validate their arguments before writing anything, so EINVAL
 *    leaves the output untouched; ETOOBIG/ENOMEM follow buf's rule (the
 *    buffer is freed).  Strings we emit are always valid UTF-8: invalid
 *    sequences are replaced by U+FFFD rather than failing, because losing a
 *    dead letter over a bad byte in an error message would be worse.
 *  - A message is encoded without `kind`, byte for byte as before kinds
 *    existed; the other kinds write `kind` and their own fields.
 *  - The keys files and steps added (a request's `attachments`,
 *    `include_steps`, an image's `data`; a response's `files`, `steps`, an
 *    annotation's `container_id`) are written only when set, so what
 *    was encoded before them keeps its bytes.
 */
#include "contract.h"
#include "contract_files.h"
#include "contract_kinds.h"
#include "msgpack_util.h"

#include <math.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- encoding --------------------------------------------------------------- */

/* After buf frees itself on ETOOBIG a later, smaller append would succeed
 * into the emptied buffer and produce garbage; the sticky err prevents it. */
static void e_map(mpu_enc *e, size_t n) { (void)msgpack_pack_map(&e->pk, n); }
static void e_arr(mpu_enc *e, size_t n) { (void)msgpack_pack_array(&e->pk, n); }
static void e_nil(mpu_enc *e) { (void)msgpack_pack_nil(&e->pk); }
static void e_int(mpu_enc *e, int64_t v) { (void)msgpack_pack_int64(&e->pk, v); }
static void e_bool(mpu_enc *e, int v) { (void)(v ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk)); }
/* A non-finite double (a score the API wrote as 1e999) is written as 0:
 * the JSON view would make it null, which the schema does not allow. */
static void e_double(mpu_enc *e, double v) { (void)msgpack_pack_double(&e->pk, isfinite(v) ? v : 0.0); }
static void e_bin(mpu_enc *e, const void *p, size_t n) {
  (void)msgpack_pack_bin(&e->pk, n);
  if (n) (void)msgpack_pack_bin_body(&e->pk, p, n);
}

/* Copy s to a fresh allocation with every invalid UTF-8 byte replaced by
 * U+FFFD (3 bytes, hence the 3x bound). */
static char *utf8_sanitize(const char *p, size_t n, size_t *out_len) {
  if (n > (SIZE_MAX - 1) / 3) return NULL;
  char *o = malloc(n * 3 + 1);
  if (!o) return NULL;
  const unsigned char *s = (const unsigned char *)p;
  size_t i = 0, j = 0;
  while (i < n) {
    size_t k = mpu_utf8_seq(s + i, n - i);
    if (k) {
      memcpy(o + j, s + i, k);
      i += k;
      j += k;
    } else {
      memcpy(o + j, "\xEF\xBF\xBD", 3);
      i++;
      j += 3;
    }
  }
  *out_len = j;
  return o;
}

static void e_strn(mpu_enc *e, const char *s, size_t n) {
  if (e->err) return;
  if (!s) n = 0;
  if (n && !mpu_utf8_valid(s, n)) {
    size_t m;
    char *t = utf8_sanitize(s, n, &m);
    if (!t) {
      e->err = AW_ENOMEM;
      return;
    }
    (void)msgpack_pack_str_with_body(&e->pk, t, m);
    free(t);
    return;
  }
  (void)msgpack_pack_str(&e->pk, n);
  if (n) (void)msgpack_pack_str_body(&e->pk, s, n);
}

/* A string, "" for NULL (fields the contract types as plain string). */
static void e_str(mpu_enc *e, const char *s) { e_strn(e, s, s ? strlen(s) : 0); }
/* A string, nil for NULL (fields the contract types as string or nil). */
static void e_str_or_nil(mpu_enc *e, const char *s) {
  if (s) e_str(e, s);
  else e_nil(e);
}
static void e_key(mpu_enc *e, const char *k) { e_strn(e, k, strlen(k)); }

/* `content` (or an appended message's): a single text part in the
 * plain-string form, what most producers send; else an array of parts. */
static void e_parts(mpu_enc *e, const contract_part *parts, size_t nparts) {
  if (nparts == 1 && parts[0].type == CONTRACT_PART_TEXT) {
    e_strn(e, parts[0].text, parts[0].text_len);
    return;
  }
  e_arr(e, nparts);
  for (size_t i = 0; i < nparts; i++) {
    const contract_part *p = &parts[i];
    bool has_detail = p->detail && (p->type == CONTRACT_PART_IMAGE_URL || p->type == CONTRACT_PART_IMAGE_FILE);
    if (p->type == CONTRACT_PART_IMAGE_FILE && p->data) { /* inline: data and its type instead of file_id */
      e_map(e, 3 + has_detail + (p->filename != NULL));
      e_key(e, "type");
      e_key(e, "image_file");
      e_key(e, "data");
      e_bin(e, p->data, p->data_len);
      e_key(e, "media_type");
      e_str(e, p->media_type);
      if (p->filename) {
        e_key(e, "filename");
        e_str(e, p->filename);
      }
      if (has_detail) {
        e_key(e, "detail");
        e_str(e, p->detail);
      }
      continue;
    }
    e_map(e, 2 + has_detail);
    e_key(e, "type");
    switch (p->type) {
    case CONTRACT_PART_TEXT: e_key(e, "text"); e_key(e, "text"); break;
    case CONTRACT_PART_IMAGE_URL: e_key(e, "image_url"); e_key(e, "url"); break;
    case CONTRACT_PART_IMAGE_FILE: e_key(e, "image_file"); e_key(e, "file_id"); break;
    case CONTRACT_PART_FILE: e_key(e, "file"); e_key(e, "file_id"); break;
    }
    e_strn(e, p->text, p->text_len);
    if (has_detail) {
      e_key(e, "detail");
      e_str(e, p->detail);
    }
  }
}

/* The keys of a conversation request's kind (contract_kinds.c checked
 * them): how many, then the keys themselves. */
static size_t kind_keys(const contract_request *r) {
  switch (r->kind) {
  case CONTRACT_KIND_HISTORY: return (r->limit > 0) + (r->after != NULL) + (r->before != NULL) + 1;
  case CONTRACT_KIND_APPEND: return 1;
  case CONTRACT_KIND_CANCEL: return r->target_event_id != NULL;
  default: return 0;
  }
}

static void e_kind_fields(mpu_enc *e, const contract_request *r) {
  if (r->kind == CONTRACT_KIND_HISTORY) {
    if (r->limit > 0) {
      e_key(e, "limit");
      e_int(e, r->limit);
    }
    if (r->after) {
      e_key(e, "after");
      e_str(e, r->after);
    }
    if (r->before) {
      e_key(e, "before");
      e_str(e, r->before);
    }
    e_key(e, "order");
    e_key(e, r->order_asc ? "asc" : "desc");
  } else if (r->kind == CONTRACT_KIND_APPEND) {
    e_key(e, "messages");
    e_arr(e, r->nmessages);
    for (size_t i = 0; i < r->nmessages; i++) {
      e_map(e, 2);
      e_key(e, "role");
      e_str(e, r->messages[i].role);
      e_key(e, "content");
      e_parts(e, r->messages[i].parts, r->messages[i].nparts);
    }
  } else if (r->kind == CONTRACT_KIND_CANCEL && r->target_event_id) {
    e_key(e, "target_event_id");
    e_str(e, r->target_event_id);
  }
}

/* `attachments`: {file_id} or {data, filename, media_type}, and `tools`
 * (contract_files_check checked them). */
static void e_attachments(mpu_enc *e, const contract_attachment *att, size_t n) {
  e_arr(e, n);
  for (size_t i = 0; i < n; i++) {
    const contract_attachment *at = &att[i];
    e_map(e, at->data ? 4 : 2);
    if (at->data) {
      e_key(e, "data");
      e_bin(e, at->data, at->data_len);
      e_key(e, "filename");
      e_str(e, at->filename);
      e_key(e, "media_type");
      e_str(e, at->media_type);
    } else {
      e_key(e, "file_id");
      e_str(e, at->file_id);
    }
    const bool fs = at->tools & CONTRACT_ATT_FILE_SEARCH, ci = at->tools & CONTRACT_ATT_CODE_INTERPRETER;
    e_key(e, "tools");
    e_arr(e, (size_t)fs + ci);
    if (fs) e_key(e, "file_search");
    if (ci) e_key(e, "code_interpreter");
  }
}

int contract_request_encode(const contract_request *r, buf *out) {
  if (!r || !r->event_id || !r->conversation_id || contract_kind_fields_check(r)) return AW_EINVAL;
  const bool message = r->kind == CONTRACT_KIND_MESSAGE;
  /* A message needs its assistant and content; the other kinds have no
   * content and an optional assistant (written when set). */
  if (message && (!r->assistant || r->nparts == 0 || !r->parts)) return AW_EINVAL;
  if (r->nmetadata && !r->metadata) return AW_EINVAL;
  for (size_t i = 0; message && i < r->nparts; i++) {
    if (!r->parts[i].text && r->parts[i].text_len) return AW_EINVAL;
    if ((unsigned)r->parts[i].type > CONTRACT_PART_FILE) return AW_EINVAL;
  }
  for (size_t i = 0; i < r->nmetadata; i++)
    if (!r->metadata[i].key || !r->metadata[i].value) return AW_EINVAL;
  /* Files and steps belong to a message (else they would be dropped). */
  if (!message && (r->nattachments || r->include_steps)) return AW_EINVAL;
  if (contract_files_check(r)) return AW_EINVAL;

  mpu_enc e;
  mpu_enc_init(&e, out);
  size_t n = 3 + (r->nmetadata > 0);
  if (message)
    n += 3 + (r->instructions != NULL) + (r->additional_instructions != NULL) + (r->nattachments > 0) +
         (r->include_steps != 0);
  else
    n += 1 + (r->assistant != NULL) + kind_keys(r);
  e_map(&e, n);
  e_key(&e, "v");
  e_int(&e, r->v ? r->v : CONTRACT_VERSION);
  if (!message) { /* a message leaves `kind` out: the bytes of a v1 producer */
    e_key(&e, "kind");
    e_key(&e, contract_kind_name(r->kind));
  }
  e_key(&e, "event_id");
  e_str(&e, r->event_id);
  e_key(&e, "conversation_id");
  e_str(&e, r->conversation_id);
  if (r->assistant) {
    e_key(&e, "assistant");
    e_str(&e, r->assistant);
  }
  if (message) {
    e_key(&e, "content");
    e_parts(&e, r->parts, r->nparts);
  }
  if (r->nmetadata) {
    e_key(&e, "metadata");
    e_map(&e, r->nmetadata);
    for (size_t i = 0; i < r->nmetadata; i++) {
      e_str(&e, r->metadata[i].key);
      e_str(&e, r->metadata[i].value);
    }
  }
  if (!message) {
    e_kind_fields(&e, r);
    return e.err;
  }
  if (r->instructions) {
    e_key(&e, "instructions");
    e_str(&e, r->instructions);
  }
  if (r->additional_instructions) {
    e_key(&e, "additional_instructions");
    e_str(&e, r->additional_instructions);
  }
  e_key(&e, "stream");
  e_bool(&e, r->stream);
  if (r->nattachments) {
    e_key(&e, "attachments");
    e_attachments(&e, r->attachments, r->nattachments);
  }
  if (r->include_steps) {
    e_key(&e, "include_steps");
    e_bool(&e, 1);
  }
  return e.err;
}

/* ---- a response's files and steps ------------------------------------------- */

static bool steps_valid(const contract_step *st, size_t n) {
  if (n && !st) return false;
  for (size_t i = 0; i < n; i++) {
    const contract_step *s = &st[i];
    if (!s->type || !s->id) return false;
    if (!strcmp(s->type, "file_search")) {
      if ((s->nqueries && !s->queries) || (s->nresults && !s->results)) return false;
      for (size_t j = 0; j < s->nqueries; j++)
        if (!s->queries[j]) return false;
      for (size_t j = 0; j < s->nresults; j++)
        if (!s->results[j].file_id) return false;
    } else if (!strcmp(s->type, "code_interpreter")) {
      if (s->noutputs && !s->outputs) return false;
      for (size_t j = 0; j < s->noutputs; j++) {
        const contract_step_output *o = &s->outputs[j];
        if (!o->type) return false;
        if (strcmp(o->type, "logs") && ((strcmp(o->type, "image") && strcmp(o->type, "file")) || !o->file_id))
          return false;
      }
    } else {
      return false;
    }
  }
  return true;
}

static bool files_valid(const contract_file *f, size_t n) {
  if (n && !f) return false;
  for (size_t i = 0; i < n; i++)
    if (!f[i].file_id || (!f[i].data && f[i].data_len)) return false;
  return true;
}

/* `files`: {file_id, container_id?, filename, media_type, bytes, data?};
 * bytes nil when unknown, data only when inline. */
static void e_files(mpu_enc *e, const contract_file *f, size_t n) {
  e_arr(e, n);
  for (size_t i = 0; i < n; i++) {
    e_map(e, 4 + (f[i].container_id != NULL) + (f[i].data != NULL));
    e_key(e, "file_id");
    e_str(e, f[i].file_id);
    if (f[i].container_id) {
      e_key(e, "container_id");
      e_str(e, f[i].container_id);
    }
    e_key(e, "filename");
    e_str(e, f[i].filename);
    e_key(e, "media_type");
    e_str(e, f[i].media_type ? f[i].media_type : "application/octet-stream");
    e_key(e, "bytes");
    if (f[i].bytes >= 0) e_int(e, f[i].bytes);
    else e_nil(e);
    if (f[i].data) {
      e_key(e, "data");
      e_bin(e, f[i].data, f[i].data_len);
    }
  }
}

/* `steps`: each {type, id, status?} and its type's keys (steps_valid
 * checked them). */
static void e_steps(mpu_enc *e, const contract_step *st, size_t n) {
  e_arr(e, n);
  for (size_t i = 0; i < n; i++) {
    const contract_step *s = &st[i];
    const bool fs = !strcmp(s->type, "file_search");
    e_map(e, 4 + (s->status != NULL));
    e_key(e, "type");
    e_str(e, s->type);
    e_key(e, "id");
    e_str(e, s->id);
    if (s->status) {
      e_key(e, "status");
      e_str(e, s->status);
    }
    if (fs) {
      e_key(e, "queries");
      e_arr(e, s->nqueries);
      for (size_t j = 0; j < s->nqueries; j++) e_str(e, s->queries[j]);
      e_key(e, "results");
      e_arr(e, s->nresults);
      for (size_t j = 0; j < s->nresults; j++) {
        const contract_step_result *r = &s->results[j];
        e_map(e, 3 + (r->text != NULL));
        e_key(e, "file_id");
        e_str(e, r->file_id);
        e_key(e, "filename");
        e_str(e, r->filename);
        e_key(e, "score");
        e_double(e, r->score);
        if (r->text) {
          e_key(e, "text");
          e_str(e, r->text);
        }
      }
      continue;
    }
    e_key(e, "code");
    e_str(e, s->code);
    e_key(e, "outputs");
    e_arr(e, s->noutputs);
    for (size_t j = 0; j < s->noutputs; j++) {
      const contract_step_output *o = &s->outputs[j];
      const bool logs = !strcmp(o->type, "logs");
      e_map(e, 2);
      e_key(e, "type");
      e_str(e, o->type);
      e_key(e, logs ? "logs" : "file_id");
      e_str(e, logs ? o->logs : o->file_id);
    }
  }
}

static bool backend_kind_valid(const char *s) {
  return !strcmp(s, "assistants") || !strcmp(s, "responses") || !strcmp(s, "chat");
}

static bool status_valid(const char *s) {
  static const char *const ok[] = {"completed", "failed", "cancelled", "expired", "incomplete", "rejected"};
  if (!s) return false;
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (!strcmp(s, ok[i])) return true;
  return false;
}

int contract_response_encode(const contract_response *r, buf *out) {
  if (!r || !status_valid(r->status) || (r->nmessages && !r->messages)) return AW_EINVAL;
  for (size_t i = 0; i < r->nmessages; i++) {
    const contract_out_message *m = &r->messages[i];
    if (!m->id || (m->nparts && !m->parts)) return AW_EINVAL;
    if (m->role && strcmp(m->role, "user") && strcmp(m->role, "assistant")) return AW_EINVAL;
    for (size_t j = 0; j < m->nparts; j++) {
      const contract_out_part *p = &m->parts[j];
      if (!p->type || (strcmp(p->type, "text") && strcmp(p->type, "image_file"))) return AW_EINVAL;
      if (!p->text && p->text_len) return AW_EINVAL;
      if (p->nannotations && !p->annotations) return AW_EINVAL;
      for (size_t k = 0; k < p->nannotations; k++)
        if (!p->annotations[k].type) return AW_EINVAL;
    }
  }

  if (r->ntool_calls && !r->tool_calls) return AW_EINVAL;
  for (size_t i = 0; i < r->ntool_calls; i++)
    if (!r->tool_calls[i].id || !r->tool_calls[i].name || !r->tool_calls[i].outcome) return AW_EINVAL;
  if (r->backend_kind ? !backend_kind_valid(r->backend_kind)
                      : (r->backend_conversation || r->backend_turn))
    return AW_EINVAL;
  /* The conversation requests' keys, each with its kind only (else they
   * would be dropped silently). */
  if ((unsigned)r->kind >= CONTRACT_KIND_COUNT) return AW_EINVAL;
  const bool history = r->kind == CONTRACT_KIND_HISTORY, cancel = r->kind == CONTRACT_KIND_CANCEL;
  if (!history && (r->has_more || r->first_id || r->last_id)) return AW_EINVAL;
  if (!cancel && r->cancelled_event_id) return AW_EINVAL;
  /* A message's answer only: files and steps. */
  const bool files = r->nfiles > 0, steps = r->want_steps != 0;
  if ((files || steps) && r->kind != CONTRACT_KIND_MESSAGE) return AW_EINVAL;
  if (!files_valid(r->files, r->nfiles) || (steps && !steps_valid(r->steps, r->nsteps))) return AW_EINVAL;

  mpu_enc e;
  mpu_enc_init(&e, out);
  e_map(&e, 10 + (r->ntool_calls > 0) + (r->backend_kind != NULL) + (r->tenant != NULL) +
                (r->kind != CONTRACT_KIND_MESSAGE) + history + cancel + files + steps);
  e_key(&e, "v");
  e_int(&e, CONTRACT_VERSION);
  e_key(&e, "event_id");
  e_str(&e, r->event_id);
  e_key(&e, "conversation_id");
  e_str(&e, r->conversation_id);
  e_key(&e, "thread_id");
  e_str_or_nil(&e, r->thread_id);
  e_key(&e, "run_id");
  e_str_or_nil(&e, r->run_id);
  e_key(&e, "status");
  e_str(&e, r->status);
  e_key(&e, "messages");
  e_arr(&e, r->nmessages);
  for (size_t i = 0; i < r->nmessages; i++) {
    const contract_out_message *m = &r->messages[i];
    e_map(&e, 2 + (m->role != NULL) + (m->created_at != 0));
    e_key(&e, "id");
    e_str(&e, m->id);
    if (m->role) {
      e_key(&e, "role");
      e_str(&e, m->role);
    }
    if (m->created_at) {
      e_key(&e, "created_at");
      e_int(&e, m->created_at);
    }
    e_key(&e, "content");
    e_arr(&e, m->nparts);
    for (size_t j = 0; j < m->nparts; j++) {
      const contract_out_part *p = &m->parts[j];
      e_map(&e, 2);
      e_key(&e, "type");
      e_str(&e, p->type);
      if (!strcmp(p->type, "image_file")) {
        /* Mirrors the Assistants API: {"type":"image_file","image_file":{"file_id":...}}. */
        e_key(&e, "image_file");
        e_map(&e, 1);
        e_key(&e, "file_id");
        e_strn(&e, p->text, p->text_len);
        continue;
      }
      e_key(&e, "text");
      e_map(&e, 2);
      e_key(&e, "value");
      e_strn(&e, p->text, p->text_len);
      e_key(&e, "annotations");
      e_arr(&e, p->nannotations);
      for (size_t k = 0; k < p->nannotations; k++) {
        const contract_annotation *an = &p->annotations[k];
        e_map(&e, 5 + (an->filename != NULL) + (an->container_id != NULL));
        e_key(&e, "type");
        e_str(&e, an->type);
        e_key(&e, "text");
        e_str(&e, an->text);
        e_key(&e, "file_id");
        e_str(&e, an->file_id);
        e_key(&e, "start_index");
        e_int(&e, an->start_index);
        e_key(&e, "end_index");
        e_int(&e, an->end_index);
        if (an->filename) {
          e_key(&e, "filename");
          e_str(&e, an->filename);
        }
        if (an->container_id) {
          e_key(&e, "container_id");
          e_str(&e, an->container_id);
        }
      }
    }
  }
  e_key(&e, "usage");
  if (r->usage.present) {
    e_map(&e, 3);
    e_key(&e, "prompt_tokens");
    e_int(&e, r->usage.prompt_tokens);
    e_key(&e, "completion_tokens");
    e_int(&e, r->usage.completion_tokens);
    e_key(&e, "total_tokens");
    e_int(&e, r->usage.total_tokens);
  } else {
    e_nil(&e);
  }
  e_key(&e, "error");
  if (r->error_code) {
    e_map(&e, 2);
    e_key(&e, "code");
    e_str(&e, r->error_code);
    e_key(&e, "message");
    e_str(&e, r->error_message);
  } else {
    e_nil(&e);
  }
  e_key(&e, "timings");
  e_map(&e, 3);
  e_key(&e, "received_ms");
  e_int(&e, r->timings.received_ms);
  e_key(&e, "run_started_ms");
  e_int(&e, r->timings.run_started_ms);
  e_key(&e, "completed_ms");
  e_int(&e, r->timings.completed_ms);
  if (r->ntool_calls) {
    e_key(&e, "tool_calls");
    e_arr(&e, r->ntool_calls);
    for (size_t i = 0; i < r->ntool_calls; i++) {
      e_map(&e, 3);
      e_key(&e, "id");
      e_str(&e, r->tool_calls[i].id);
      e_key(&e, "name");
      e_str(&e, r->tool_calls[i].name);
      e_key(&e, "outcome");
      e_str(&e, r->tool_calls[i].outcome);
    }
  }
  if (r->backend_kind) {
    e_key(&e, "backend");
    e_map(&e, 3);
    e_key(&e, "kind");
    e_str(&e, r->backend_kind);
    e_key(&e, "conversation");
    e_str_or_nil(&e, r->backend_conversation);
    e_key(&e, "turn");
    e_str_or_nil(&e, r->backend_turn);
  }
  if (r->tenant) {
    e_key(&e, "tenant");
    e_str(&e, r->tenant);
  }
  if (r->kind != CONTRACT_KIND_MESSAGE) {
    e_key(&e, "kind");
    e_key(&e, contract_kind_name(r->kind));
  }
  if (history) {
    e_key(&e, "page");
    e_map(&e, 3);
    e_key(&e, "has_more");
    e_bool(&e, r->has_more);
    e_key(&e, "first_id");
    e_str_or_nil(&e, r->first_id);
    e_key(&e, "last_id");
    e_str_or_nil(&e, r->last_id);
  }
  if (cancel) {
    e_key(&e, "cancelled_event_id");
    e_str_or_nil(&e, r->cancelled_event_id);
  }
  if (files) {
    e_key(&e, "files");
    e_files(&e, r->files, r->nfiles);
  }
  if (steps) {
    e_key(&e, "steps");
    e_steps(&e, r->steps, r->nsteps);
  }
  return e.err;
}

int contract_delta_encode(const char *event_id, const char *conversation_id, const char *run_id,
                          int64_t seq, int attempt, const char *text, size_t text_len, buf *out) {
  if (!event_id || !conversation_id || seq < 0 || attempt < 0 || (!text && text_len)) return AW_EINVAL;
  mpu_enc e;
  mpu_enc_init(&e, out);
  e_map(&e, 7);
  e_key(&e, "v");
  e_int(&e, CONTRACT_VERSION);
  e_key(&e, "event_id");
  e_str(&e, event_id);
  e_key(&e, "conversation_id");
  e_str(&e, conversation_id);
  e_key(&e, "run_id");
  e_str_or_nil(&e, run_id);
  e_key(&e, "seq");
  e_int(&e, seq);
  e_key(&e, "attempt");
  e_int(&e, attempt);
  e_key(&e, "text");
  e_strn(&e, text, text_len);
  return e.err;
}

int contract_dlq_encode(const contract_dlq *d, buf *out) {
  if (!d || !d->topic || !d->error_code || (!d->original && d->original_len) ||
      (!d->original_key && d->original_key_len))
    return AW_EINVAL;
  int degraded = d->original_size > 0;
  if (degraded && !d->original_sha256) return AW_EINVAL;
  mpu_enc e;
  mpu_enc_init(&e, out);
  e_map(&e, degraded ? 10 : 8);
  e_key(&e, "v");
  e_int(&e, CONTRACT_VERSION);
  e_key(&e, "original");
  e_bin(&e, d->original, d->original_len);
  e_key(&e, "original_key");
  /* Kafka tells a null key from an empty one; so do we. */
  if (d->original_key) e_bin(&e, d->original_key, d->original_key_len);
  else e_nil(&e);
  e_key(&e, "source");
  e_map(&e, 3);
  e_key(&e, "topic");
  e_str(&e, d->topic);
  e_key(&e, "partition");
  e_int(&e, d->partition);
  e_key(&e, "offset");
  e_int(&e, d->offset);
  e_key(&e, "error");
  e_map(&e, 2);
  e_key(&e, "code");
  e_str(&e, d->error_code);
  e_key(&e, "message");
  e_str(&e, d->error_message);
  e_key(&e, "event_id");
  e_str_or_nil(&e, d->event_id);
  e_key(&e, "conversation_id");
  e_str_or_nil(&e, d->conversation_id);
  e_key(&e, "failed_ms");
  e_int(&e, d->failed_ms);
  if (degraded) {
    e_key(&e, "original_size");
    e_int(&e, d->original_size);
    e_key(&e, "original_sha256");
    e_str(&e, d->original_sha256);
  }
  return e.err;
}
