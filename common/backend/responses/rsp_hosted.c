/* rsp_hosted.c -- what the hosted tools left in a turn's output items: the
 * steps (file_search_call, code_interpreter_call) and the generated files
 * (container_file_citation annotations of the assistant's messages); see
 * rsp_int.h.
 *
 * Why apart from the answer collector (rsp_json.c): the answer is bounded
 * by max_answer_bytes and fails the turn past it; steps are a report on
 * the side (search chunks, code, logs) whose size the model decides, so
 * they get a budget of their own and past it an item is left out (counted
 * in dropped), never failing the answer.  Each item is measured first (a
 * dry run of the same copy) so that one is kept whole or not at all.
 *
 * Items are told apart by id (steps) and file id (files): the same item
 * seen in response.output_item.done and again in the final response, or
 * in the conversation's items when a turn of several rounds is gathered
 * again (rsp_turn.c), is kept once, in the order first seen.
 *
 * Code interpreter image outputs are {type:"image", url}: the contract's
 * image output names a file id, never a url.  Two urls reference a
 * container file, and become an "image" output with that file's id:
 *   ".../containers/{cntr}/files/{cfile}[/content]" (how the API serves a
 *   container file): the id is in the url;
 *   "sandbox:/mnt/data/NAME" (where the code wrote it, in the call's
 *   container): the id is that of the file NAME of the same container
 *   that a message of the turn cites (container_file_citation), resolved
 *   when the views are built; an image no message cites has no id to give.
 * Any other url (a signed link elsewhere, a data: url), or a path that
 * does not resolve, is left out: a consumer could neither download it
 * through us nor rely on it lasting.
 *
 * Pure (no I/O).
 */
#include "rsp_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HOSTED_ARENA_MAX (256u * 1024u) /* strings of all steps of a turn */
#define HOSTED_RECORDS_MAX (64u * 1024u)
#define HOSTED_STEPS_MAX 64

enum { STEP_SEARCH = 1, STEP_CODE };
enum { OUT_LOGS = 1, OUT_IMAGE, OUT_IMAGE_PATH };
#define SANDBOX_DIR "sandbox:/mnt/data/"
#define NONE SIZE_MAX

typedef struct step_rec {
  int kind;
  size_t id, status, code;        /* arena offsets; NONE: absent */
  size_t container;               /* code_interpreter: its container_id; NONE: none */
  size_t first_q, nq, first_r, nr, first_o, no;
} step_rec;
typedef struct result_rec {
  size_t file_id, filename, text;
  double score;
} result_rec;
typedef struct output_rec {
  int kind;
  size_t value;                   /* logs text, the image's file id, or its name (PATH) */
} output_rec;
typedef struct file_rec {
  size_t file_id, container_id, filename;
} file_rec;

static const cJSON *get(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *get_str(const cJSON *o, const char *k) {
  const cJSON *v = get(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int str_is(const char *s, const char *lit) { return s && strcmp(s, lit) == 0; }

void rsp_hosted_init(rsp_hosted *h, int want_steps) {
  memset(h, 0, sizeof *h);
  h->want_steps = want_steps;
  buf_init(&h->arena, HOSTED_ARENA_MAX);
  buf_init(&h->steps, HOSTED_STEPS_MAX * sizeof(step_rec));
  buf_init(&h->results, HOSTED_RECORDS_MAX);
  buf_init(&h->outputs, HOSTED_RECORDS_MAX);
  buf_init(&h->queries, HOSTED_RECORDS_MAX);
  buf_init(&h->files, GF_MAX_FILES * sizeof(file_rec));
}

void rsp_hosted_reset(rsp_hosted *h) {
  buf_reset(&h->arena);
  buf_reset(&h->steps);
  buf_reset(&h->results);
  buf_reset(&h->outputs);
  buf_reset(&h->queries);
  buf_reset(&h->files);
  h->dropped = 0;
}

void rsp_hosted_free(rsp_hosted *h) {
  buf_free(&h->arena);
  buf_free(&h->steps);
  buf_free(&h->results);
  buf_free(&h->outputs);
  buf_free(&h->queries);
  buf_free(&h->files);
  free(h->built);
  h->built = NULL;
}

size_t rsp_hosted_nsteps(const rsp_hosted *h) { return h->steps.len / sizeof(step_rec); }
size_t rsp_hosted_nfiles(const rsp_hosted *h) { return h->files.len / sizeof(file_rec); }

/* ---- one item, copied in two passes: measure (dry), then copy ---------------- */

typedef struct copy {
  rsp_hosted *h;
  int dry;
  size_t arena, steps, results, outputs, queries, files; /* bytes a dry run needs */
  int rc;
} copy;

static size_t put_str(copy *c, const char *s) {
  if (!s) return NONE;
  size_t n = strlen(s) + 1;
  if (c->dry) {
    c->arena += n;
    return NONE;
  }
  size_t off = c->h->arena.len;
  if (!c->rc) c->rc = buf_append(&c->h->arena, s, n);
  return off;
}

static void put_rec(copy *c, buf *b, size_t *need, const void *rec, size_t n) {
  if (c->dry) *need += n;
  else if (!c->rc) c->rc = buf_append(b, rec, n);
}

static const char *arena_str(const rsp_hosted *h, size_t off) { return off == NONE ? NULL : h->arena.data + off; }

static int have_step(const rsp_hosted *h, const char *id) {
  const step_rec *s = (const step_rec *)h->steps.data;
  for (size_t i = 0; i < rsp_hosted_nsteps(h); i++)
    if (str_is(arena_str(h, s[i].id), id)) return 1;
  return 0;
}

/* The file id of a url that references a container file, or NULL (out
 * receives it, at most RSP_ID_MAX bytes). */
static const char *container_file_of(const char *url, char out[RSP_ID_MAX]) {
  const char *p = url ? strstr(url, "/containers/") : NULL;
  if (!p) return NULL;
  p += strlen("/containers/");
  size_t n = strcspn(p, "/?#");
  if (!n || n >= RSP_ID_MAX || strncmp(p + n, "/files/", 7) != 0) return NULL;
  p += n + 7;
  n = strcspn(p, "/?#");
  if (!n || n >= RSP_ID_MAX) return NULL;
  memcpy(out, p, n);
  out[n] = '\0';
  if (p[n] == '/' && strncmp(p + n, "/content", 8) != 0) return NULL;
  return rsp_id_ok(out) ? out : NULL;
}

static void copy_step(copy *c, const cJSON *item, int kind) {
  rsp_hosted *h = c->h;
  step_rec s = {.kind = kind, .code = NONE, .container = NONE};
  s.id = put_str(c, get_str(item, "id"));
  s.status = put_str(c, get_str(item, "status"));
  const cJSON *v;
  if (kind == STEP_SEARCH) {
    s.first_q = h->queries.len / sizeof(size_t);
    cJSON_ArrayForEach(v, get(item, "queries")) {
      if (!cJSON_IsString(v)) continue;
      size_t off = put_str(c, v->valuestring);
      put_rec(c, &h->queries, &c->queries, &off, sizeof off);
      s.nq++;
    }
    s.first_r = h->results.len / sizeof(result_rec);
    cJSON_ArrayForEach(v, get(item, "results")) {
      const char *fid = get_str(v, "file_id");
      if (!fid || !fid[0]) continue;
      const cJSON *sc = get(v, "score");
      result_rec r = {.score = cJSON_IsNumber(sc) && isfinite(sc->valuedouble) ? sc->valuedouble : 0};
      r.file_id = put_str(c, fid);
      r.filename = put_str(c, get_str(v, "filename"));
      r.text = put_str(c, get_str(v, "text"));
      put_rec(c, &h->results, &c->results, &r, sizeof r);
      s.nr++;
    }
  } else {
    s.code = put_str(c, get_str(item, "code"));
    const char *cid = get_str(item, "container_id");
    if (rsp_id_ok(cid)) s.container = put_str(c, cid);
    s.first_o = h->outputs.len / sizeof(output_rec);
    cJSON_ArrayForEach(v, get(item, "outputs")) {
      const char *type = get_str(v, "type");
      output_rec o = {0};
      char fid[RSP_ID_MAX];
      if (str_is(type, "logs") && get_str(v, "logs")) {
        o.kind = OUT_LOGS;
        o.value = put_str(c, get_str(v, "logs"));
      } else if (str_is(type, "image") && container_file_of(get_str(v, "url"), fid)) {
        o.kind = OUT_IMAGE;
        o.value = put_str(c, fid);
      } else if (str_is(type, "image") && rsp_id_ok(get_str(item, "container_id")) && get_str(v, "url") &&
                 !strncmp(get_str(v, "url"), SANDBOX_DIR, strlen(SANDBOX_DIR)) &&
                 get_str(v, "url")[strlen(SANDBOX_DIR)] && !strchr(get_str(v, "url") + strlen(SANDBOX_DIR), '/')) {
        o.kind = OUT_IMAGE_PATH;
        o.value = put_str(c, get_str(v, "url") + strlen(SANDBOX_DIR));
      } else {
        continue; /* an image elsewhere (see the top), or an unknown output */
      }
      put_rec(c, &h->outputs, &c->outputs, &o, sizeof o);
      s.no++;
    }
  }
  put_rec(c, &h->steps, &c->steps, &s, sizeof s);
}

static int have_file(const rsp_hosted *h, const char *id) {
  const file_rec *f = (const file_rec *)h->files.data;
  for (size_t i = 0; i < rsp_hosted_nfiles(h); i++)
    if (str_is(arena_str(h, f[i].file_id), id)) return 1;
  return 0;
}

/* Generated files: the container files an assistant message cites. */
static int add_files(rsp_hosted *h, const cJSON *item) {
  const cJSON *part, *an;
  cJSON_ArrayForEach(part, get(item, "content")) cJSON_ArrayForEach(an, get(part, "annotations")) {
    const char *fid = get_str(an, "file_id"), *cid = get_str(an, "container_id");
    if (!str_is(get_str(an, "type"), "container_file_citation") || !rsp_id_ok(fid) || !rsp_id_ok(cid) ||
        have_file(h, fid))
      continue;
    const char *name = get_str(an, "filename");
    copy c = {.h = h, .dry = 1};
    file_rec f;
    put_str(&c, fid);
    put_str(&c, cid);
    put_str(&c, name);
    if (h->files.len + sizeof f > h->files.max || h->arena.len + c.arena > h->arena.max) {
      h->dropped++;
      continue;
    }
    c.dry = 0;
    f.file_id = put_str(&c, fid);
    f.container_id = put_str(&c, cid);
    f.filename = put_str(&c, name);
    put_rec(&c, &h->files, NULL, &f, sizeof f);
    if (c.rc) {
      rsp_hosted_reset(h);
      return AW_ENOMEM;
    }
  }
  return AW_OK;
}

int rsp_hosted_add_item(rsp_hosted *h, const cJSON *item) {
  const char *type = get_str(item, "type");
  if (str_is(type, "message")) return str_is(get_str(item, "role"), "user") ? AW_OK : add_files(h, item);
  int kind = str_is(type, "file_search_call") ? STEP_SEARCH : str_is(type, "code_interpreter_call") ? STEP_CODE : 0;
  const char *id = get_str(item, "id");
  if (!kind || !h->want_steps || !id || !id[0] || have_step(h, id)) return AW_OK;
  copy c = {.h = h, .dry = 1};
  copy_step(&c, item, kind);
  if (h->arena.len + c.arena > h->arena.max || h->steps.len + c.steps > h->steps.max ||
      h->results.len + c.results > h->results.max || h->outputs.len + c.outputs > h->outputs.max ||
      h->queries.len + c.queries > h->queries.max) {
    h->dropped++;
    return AW_OK;
  }
  c.dry = 0;
  copy_step(&c, item, kind);
  if (c.rc) {
    /* Measured to fit: only an allocation can have failed. */
    rsp_hosted_reset(h);
    return AW_ENOMEM;
  }
  return AW_OK;
}

int rsp_hosted_merge(rsp_hosted *dst, const rsp_hosted *src) {
  /* Re-adding through JSON would parse what is copied already; records are
   * copied instead, strings re-put, duplicates skipped as on add. */
  const step_rec *s = (const step_rec *)src->steps.data;
  for (size_t i = 0; i < rsp_hosted_nsteps(src); i++) {
    if (have_step(dst, arena_str(src, s[i].id))) continue;
    /* Rebuild the item as JSON: simple and rare (a turn of several rounds). */
    cJSON *it = cJSON_CreateObject(), *arr;
    int ok = it != NULL;
    ok = ok && cJSON_AddStringToObject(it, "type", s[i].kind == STEP_SEARCH ? "file_search_call" : "code_interpreter_call");
    ok = ok && cJSON_AddStringToObject(it, "id", arena_str(src, s[i].id));
    if (ok && s[i].status != NONE) ok = cJSON_AddStringToObject(it, "status", arena_str(src, s[i].status)) != NULL;
    if (ok && s[i].code != NONE) ok = cJSON_AddStringToObject(it, "code", arena_str(src, s[i].code)) != NULL;
    if (ok && s[i].container != NONE)
      ok = cJSON_AddStringToObject(it, "container_id", arena_str(src, s[i].container)) != NULL;
    if (ok && s[i].kind == STEP_SEARCH) {
      const size_t *q = (const size_t *)src->queries.data + s[i].first_q;
      const result_rec *r = (const result_rec *)src->results.data + s[i].first_r;
      ok = (arr = cJSON_AddArrayToObject(it, "queries")) != NULL;
      for (size_t k = 0; ok && k < s[i].nq; k++) ok = cJSON_AddItemToArray(arr, cJSON_CreateString(arena_str(src, q[k])));
      ok = ok && (arr = cJSON_AddArrayToObject(it, "results")) != NULL;
      for (size_t k = 0; ok && k < s[i].nr; k++) {
        cJSON *o = cJSON_CreateObject();
        ok = o && cJSON_AddItemToArray(arr, o) && cJSON_AddStringToObject(o, "file_id", arena_str(src, r[k].file_id)) &&
             (r[k].filename == NONE || cJSON_AddStringToObject(o, "filename", arena_str(src, r[k].filename))) &&
             (r[k].text == NONE || cJSON_AddStringToObject(o, "text", arena_str(src, r[k].text))) &&
             cJSON_AddNumberToObject(o, "score", r[k].score);
      }
    } else if (ok) {
      const output_rec *o = (const output_rec *)src->outputs.data + s[i].first_o;
      ok = (arr = cJSON_AddArrayToObject(it, "outputs")) != NULL;
      for (size_t k = 0; ok && k < s[i].no; k++) {
        cJSON *x = cJSON_CreateObject();
        ok = x && cJSON_AddItemToArray(arr, x);
        if (ok && o[k].kind == OUT_LOGS)
          ok = cJSON_AddStringToObject(x, "type", "logs") && cJSON_AddStringToObject(x, "logs", arena_str(src, o[k].value));
        else if (ok) {
          /* The url again, in one of the forms copy_step takes. */
          const char *v = arena_str(src, o[k].value);
          size_t n = strlen(v) + 64;
          char *url = malloc(n);
          if (url) snprintf(url, n, o[k].kind == OUT_IMAGE ? "/containers/-/files/%s" : SANDBOX_DIR "%s", v);
          ok = url && cJSON_AddStringToObject(x, "type", "image") && cJSON_AddStringToObject(x, "url", url);
          free(url);
        }
      }
    }
    int rc = ok ? rsp_hosted_add_item(dst, it) : AW_ENOMEM;
    cJSON_Delete(it);
    if (rc) return rc;
  }
  const file_rec *f = (const file_rec *)src->files.data;
  for (size_t i = 0; i < rsp_hosted_nfiles(src); i++) {
    cJSON *m = cJSON_CreateObject(), *ct, *p, *anns, *a;
    int ok = m && cJSON_AddStringToObject(m, "type", "message") && (ct = cJSON_AddArrayToObject(m, "content")) &&
             (p = cJSON_CreateObject()) && cJSON_AddItemToArray(ct, p) && (anns = cJSON_AddArrayToObject(p, "annotations")) &&
             (a = cJSON_CreateObject()) && cJSON_AddItemToArray(anns, a) &&
             cJSON_AddStringToObject(a, "type", "container_file_citation") &&
             cJSON_AddStringToObject(a, "file_id", arena_str(src, f[i].file_id)) &&
             cJSON_AddStringToObject(a, "container_id", arena_str(src, f[i].container_id)) &&
             (f[i].filename == NONE || cJSON_AddStringToObject(a, "filename", arena_str(src, f[i].filename)));
    int rc = ok ? add_files(dst, m) : AW_ENOMEM;
    cJSON_Delete(m);
    if (rc) return rc;
  }
  dst->dropped += src->dropped;
  return AW_OK;
}

int rsp_hosted_build(rsp_hosted *h, const contract_step **steps, size_t *nsteps, const gf_ref **refs,
                     size_t *nrefs) {
  free(h->built);
  h->built = NULL;
  *steps = NULL;
  *refs = NULL;
  *nsteps = *nrefs = 0;
  size_t ns = rsp_hosted_nsteps(h), nf = rsp_hosted_nfiles(h), nq = h->queries.len / sizeof(size_t),
         nr = h->results.len / sizeof(result_rec), no = h->outputs.len / sizeof(output_rec);
  if (!ns && !nf) return AW_OK;
  size_t sz = ns * sizeof(contract_step) + nr * sizeof(contract_step_result) + no * sizeof(contract_step_output) +
              nq * sizeof(char *) + nf * sizeof(gf_ref);
  char *mem = calloc(1, sz);
  if (!mem) return AW_ENOMEM;
  contract_step *st = (contract_step *)mem;
  contract_step_result *res = (contract_step_result *)(st + ns);
  contract_step_output *out = (contract_step_output *)(res + nr);
  const char **qs = (const char **)(out + no);
  gf_ref *gr = (gf_ref *)(qs + nq);
  const size_t *qr = (const size_t *)h->queries.data;
  const result_rec *rr = (const result_rec *)h->results.data;
  const output_rec *orr = (const output_rec *)h->outputs.data;
  const step_rec *sr = (const step_rec *)h->steps.data;
  const file_rec *fr = (const file_rec *)h->files.data;
  for (size_t i = 0; i < nq; i++) qs[i] = arena_str(h, qr[i]);
  for (size_t i = 0; i < nr; i++) {
    res[i].file_id = arena_str(h, rr[i].file_id);
    res[i].filename = rr[i].filename == NONE ? "" : arena_str(h, rr[i].filename);
    res[i].score = rr[i].score;
    res[i].text = arena_str(h, rr[i].text);
  }
  size_t nout = 0; /* outputs kept: an image path that resolves to no file is left out */
  for (size_t i = 0; i < ns; i++) {
    st[i].type = sr[i].kind == STEP_SEARCH ? "file_search" : "code_interpreter";
    st[i].id = arena_str(h, sr[i].id);
    st[i].status = arena_str(h, sr[i].status);
    if (sr[i].kind == STEP_SEARCH) {
      st[i].queries = sr[i].nq ? &qs[sr[i].first_q] : NULL;
      st[i].nqueries = sr[i].nq;
      st[i].results = sr[i].nr ? &res[sr[i].first_r] : NULL;
      st[i].nresults = sr[i].nr;
    } else {
      st[i].code = sr[i].code == NONE ? "" : arena_str(h, sr[i].code);
      size_t first = nout;
      for (size_t k = sr[i].first_o; k < sr[i].first_o + sr[i].no; k++) {
        const char *v = arena_str(h, orr[k].value), *fid = v;
        if (orr[k].kind == OUT_IMAGE_PATH) {
          fid = NULL;
          for (size_t j = 0; !fid && j < nf; j++)
            if (sr[i].container != NONE && str_is(arena_str(h, fr[j].container_id), arena_str(h, sr[i].container)) &&
                str_is(arena_str(h, fr[j].filename), v))
              fid = arena_str(h, fr[j].file_id);
          if (!fid) continue;
        }
        out[nout].type = orr[k].kind == OUT_LOGS ? "logs" : "image";
        out[nout].logs = orr[k].kind == OUT_LOGS ? v : NULL;
        out[nout].file_id = orr[k].kind == OUT_LOGS ? NULL : fid;
        nout++;
      }
      st[i].outputs = nout > first ? &out[first] : NULL;
      st[i].noutputs = nout - first;
    }
  }
  for (size_t i = 0; i < nf; i++) {
    gr[i].file_id = arena_str(h, fr[i].file_id);
    gr[i].container_id = arena_str(h, fr[i].container_id);
    gr[i].filename = arena_str(h, fr[i].filename);
  }
  h->built = mem;
  *steps = ns ? st : NULL;
  *nsteps = ns;
  *refs = nf ? gr : NULL;
  *nrefs = nf;
  return AW_OK;
}
