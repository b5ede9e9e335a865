/* asst_files.c -- what an Assistants turn's answer brings besides its
 * messages: the run's hosted tool calls (include_steps) and the files its
 * messages name, gathered after the run ended and before on_done; and the
 * one error of message creation that is about a file.
 *
 * Why after the run, and in this order: both are reads of things the run
 * made (its steps; the files a code interpreter wrote), known complete only
 * once it ended, and a turn reports once.  Steps first (pages of GET
 * .../runs/{run}/steps with include[] asking for the file_search results'
 * content, ascending), then the files (gen_files.h: metadata, content up to
 * in->inline_file_max).  Everything here is a GET, retried by the HTTP
 * layer like any other; a recovered turn gathers again from scratch, which
 * is safe for the same reason.
 *
 * Failures.  A generated file never fails the turn (gen_files.h lists it by
 * reference).  The steps were asked for: a failed or malformed page fails
 * the turn with its own class (a 5xx or timeout is a retry, and the retry
 * resumes the run by its checkpoint and lists them again), except a 4xx to
 * the include[] query, which a compatible server may not know: the list is
 * asked again once without it (the results then carry no text).  Too many
 * calls for the bounds (api_steps.h) keeps the ones that fit, with a
 * warning.
 *
 * Cost: one GET per 100 steps (most runs: one), and per generated file one
 * GET for its metadata plus one download when it goes inline.  Memory: the
 * steps collector (bounded by max_answer_bytes) and the fetch's files
 * (GF_MAX_FILES x inline_file_max) until the turn is freed, after on_done.
 */
#include "asst_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define STEPS_INCLUDE "include%5B%5D=step_details.tool_calls%5B*%5D.file_search.results%5B*%5D.content"

static void warn(turn_op *t, const char *fmt, const char *arg) {
  log_ctx ctx = {.event_id = asst_nz(t->event_id), .conversation_id = asst_nz(t->conversation_id),
                 .thread_id = asst_nz(t->thread), .run_id = asst_nz(t->run.id)};
  log_warn(&ctx, fmt, arg);
}

/* ---- generated files ------------------------------------------------------------- */

static void on_files(void *opaque, const gf_result *res) {
  turn_op *t = opaque;
  t->gf_res = *res; /* valid until gf_free, i.e. until the turn is freed after on_done */
  if (res->failed || res->dropped) {
    char n[64];
    snprintf(n, sizeof n, "%zu failed, %zu dropped", res->failed, res->dropped);
    warn(t, "generated files listed by reference or left out: %s", n);
  }
  t->gathered = 1;
  asst_turn_finish(t);
}

/* The last segment of an annotation's text ("sandbox:/mnt/data/x.csv"), or NULL. */
static const char *name_of(const char *text) {
  const char *sl = text ? strrchr(text, '/') : NULL;
  return sl && sl[1] ? sl + 1 : NULL;
}

/* Start fetching the files the answer names; 0 when there are none (or
 * they cannot be fetched: the answer goes without them). */
static int gather_files(turn_op *t) {
  const contract_out_message *m;
  size_t nm, nrefs = 0, cap = 0;
  if (t->no_messages || api_json_answer_build(&t->ans, &m, &nm) != AW_OK) return 0;
  for (size_t i = 0; i < nm; i++)
    for (size_t j = 0; j < m[i].nparts; j++) cap += 1 + m[i].parts[j].nannotations;
  gf_ref *refs = cap ? calloc(cap, sizeof *refs) : NULL;
  if (!refs) return 0;
  for (size_t i = 0; i < nm; i++)
    for (size_t j = 0; j < m[i].nparts; j++) {
      const contract_out_part *p = &m[i].parts[j];
      /* Ids are checked here: gen_files refuses a fetch with an id that is
       * not path-safe, and a hostile one must not cost the others. */
      if (!strcmp(p->type, "image_file") && asst_id_ok(p->text)) refs[nrefs++] = (gf_ref){.file_id = p->text};
      for (size_t k = 0; k < p->nannotations; k++) {
        const contract_annotation *a = &p->annotations[k];
        if (!strcmp(a->type, "file_path") && asst_id_ok(a->file_id))
          refs[nrefs++] = (gf_ref){.file_id = a->file_id, .filename = name_of(a->text)};
      }
    }
  int rc = AW_OK;
  if (nrefs) {
    asst_turn_phase(t, T_FILES);
    rc = gf_start(t->be->api, refs, nrefs, t->inline_file_max, on_files, t, &t->gf);
    if (rc) {
      t->gf = NULL;
      warn(t, "generated files could not be fetched: %s", aw_strerror(rc));
    }
  }
  free(refs);
  return nrefs && !rc;
}

/* ---- the run's steps --------------------------------------------------------------- */

static void on_run_steps(void *opaque, const api_result *r);

static int list_run_steps(turn_op *t) {
  char path[512];
  snprintf(path, sizeof path, "/threads/%s/runs/%s/steps?limit=100&order=asc%s%s%s%s", t->thread,
           t->run.id, t->step_include_off ? "" : "&", t->step_include_off ? "" : STEPS_INCLUDE,
           t->after[0] ? "&after=" : "", t->after);
  asst_turn_phase(t, T_RUN_STEPS);
  int rc = api_request(t->be->api, "GET", path, NULL, 1, on_run_steps, t, &t->b.call);
  if (rc) t->b.call = NULL;
  return rc;
}

/* The steps are in (or given up on): the files, then the end. */
static void steps_done(turn_op *t) {
  t->after[0] = '\0';
  if (gather_files(t)) return;
  t->gathered = 1;
  asst_turn_finish(t);
}

static void on_run_steps(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (r->err == AW_EHTTP4XX && !t->step_include_off && !t->after[0]) {
    warn(t, "listing run steps with include[] refused (%s); listing them without", r->errmsg);
    t->step_include_off = 1;
    int rc = list_run_steps(t);
    if (rc) asst_turn_fail_start(t, rc, "GET run steps");
    return;
  }
  if (r->err) {
    t->gathered = 1; /* the error is the outcome */
    asst_turn_fail_api(t, r);
    return;
  }
  char last[API_JSON_ID_MAX];
  int rc = api_steps_add_page(&t->steps, r->json, last);
  if (rc == AW_ETOOBIG) {
    warn(t, "run steps beyond the bounds left out (%s)", "api_steps.h");
    steps_done(t);
    return;
  }
  if (rc) {
    t->gathered = 1;
    asst_turn_seterr(t, rc, r->http_status, NULL, "GET %s/threads/%s/runs/%s/steps: %s",
                     api_client_base_path(t->be->api), t->thread, t->run.id,
                     rc == AW_EPARSE ? "not a list" : aw_strerror(rc));
    asst_turn_finish(t);
    return;
  }
  if (++t->steps_pages < ASST_MAX_PAGES && last[0] && strcmp(last, t->after) != 0 &&
      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "has_more"))) {
    asst_copy(t->after, sizeof t->after, last);
    rc = list_run_steps(t);
    if (rc) {
      t->gathered = 1;
      asst_turn_fail_start(t, rc, "GET run steps");
    }
    return;
  }
  steps_done(t);
}

int asst_gather(turn_op *t) {
  if (t->include_steps && t->run.id[0] && t->thread[0]) {
    t->after[0] = '\0';
    t->steps_pages = 0;
    if (list_run_steps(t) == AW_OK) return 1;
    /* Nothing was sent: only a path that does not fit or no memory. */
    asst_turn_seterr(t, AW_ENOMEM, 0, NULL, "GET run steps could not start");
    t->gathered = 1;
    return 0;
  }
  if (gather_files(t)) return 1;
  t->gathered = 1;
  return 0;
}

/* ---- a missing file ---------------------------------------------------------------- */

/* Case-insensitive strstr (the API's wording may change case). */
static int has_words(const char *s, const char *w) {
  size_t n = strlen(w);
  for (; s && *s; s++) {
    size_t i = 0;
    while (i < n && s[i] && tolower((unsigned char)s[i]) == w[i]) i++;
    if (i == n) return 1;
  }
  return 0;
}

int asst_file_not_found(turn_op *t, const api_result *r) {
  /* The message rides on the run (additional_messages): a file id it
   * names that the API does not know is refused there, 400 or 404, in
   * words that vary ("No file with id 'x'", "No file found with id 'x'.",
   * "No such File object: x").  No retry brings the file: the event is
   * rejected, saying which. */
  const char *m = r->errmsg;
  if (r->err != AW_EHTTP4XX || (r->http_status != 400 && r->http_status != 404) ||
      !((has_words(m, "no file ") && has_words(m, " with id")) || has_words(m, "no such file")))
    return 0;
  asst_turn_seterr(t, AW_ENOTFOUND, r->http_status, "file_not_found", "%s", r->errmsg);
  return 1;
}
