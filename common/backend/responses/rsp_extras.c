/* rsp_extras.c -- the end of a turn that used hosted tools: its steps and
 * generated files, gathered over all its rounds and fetched (see rsp_int.h).
 *
 * Why an operation of its own: a turn is one response per round (the
 * first, then one per function-call continuation), and each round is a
 * be_turn_start / be_turn_continue call of its own, possibly on another
 * worker; only the last one reports (be_turn_result.files / steps are
 * BE_END_ANSWER's).  What earlier rounds' code interpreter made or
 * searched is not in the last response, and nothing of it can travel in
 * the checkpoint (512 bytes).  The conversation holds it all: the items
 * after the turn's user message are every round's output.  So the last
 * round of a turn that had earlier ones reads the conversation's newest
 * items (one page of RSP_ITEMS_PAGE, with the includes that carry search
 * results and code outputs), back to the newest user message (a
 * conversation's events run one at a time: that message is the turn's),
 * and merges what it finds before this round's own output (deduplicated
 * by item / file id: the page holds this round's items too, unless the
 * server lists them late).  A failed read costs the earlier rounds' part
 * only (logged), never the answer; a turn whose items run past one page
 * loses its oldest ones.
 *
 * Then the files are fetched (gen_files.h: metadata, and the bytes up to
 * the inline cap); a file that cannot be fetched is listed by reference.
 * Nothing here fails the turn: the callback always comes, with what could
 * be had.
 *
 * Memory: two hosted collectors' worth (bounded, rsp_hosted.c) and the
 * fetcher's files (GF_MAX_FILES, inline_max bytes each), until
 * rsp_extras_free.
 */
#include "rsp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct rsp_extras {
  api_client *api;
  rsp_hosted *round;      /* borrowed: this round's output */
  rsp_hosted all;         /* every round's, when gathered */
  int gathered;           /* all holds the turn's items */
  size_t inline_max;
  char conv[RSP_ID_MAX];
  char event_id[129];
  api_call *call;
  gf_fetch *gf;
  rsp_extras_cb cb;
  void *opaque;
  const contract_step *steps;
  size_t nsteps;
};

static log_ctx ctx_of(const rsp_extras *x) {
  log_ctx c = {.event_id = x->event_id[0] ? x->event_id : NULL, .thread_id = x->conv[0] ? x->conv : NULL};
  return c;
}

/* The callback is the last thing: x may be freed inside it. */
static void finish(rsp_extras *x, const contract_file *files, size_t nfiles) {
  x->cb(x->opaque, x->steps, x->nsteps, files, nfiles);
}

static void on_files(void *opaque, const gf_result *res) {
  rsp_extras *x = opaque;
  if (res->failed || res->dropped) {
    log_ctx c = ctx_of(x);
    log_warn(&c, "generated files: %zu listed by reference after a failed fetch, %zu beyond %d dropped",
             res->failed, res->dropped, GF_MAX_FILES);
  }
  finish(x, res->files, res->nfiles);
}

static void fetch(rsp_extras *x) {
  rsp_hosted *h = x->gathered ? &x->all : x->round;
  const gf_ref *refs = NULL;
  size_t nrefs = 0;
  int rc = rsp_hosted_build(h, &x->steps, &x->nsteps, &refs, &nrefs);
  if (!rc && nrefs) rc = gf_start(x->api, refs, nrefs, x->inline_max, on_files, x, &x->gf);
  if (rc || !nrefs) {
    if (rc) {
      log_ctx c = ctx_of(x);
      log_warn(&c, "generated files not fetched: %s", aw_strerror(rc));
      x->gf = NULL;
    }
    if (rc == AW_ENOMEM) x->nsteps = 0, x->steps = NULL;
    finish(x, NULL, 0);
  }
}

static void on_items(void *opaque, const api_result *r) {
  rsp_extras *x = opaque;
  x->call = NULL;
  const cJSON *data = r->err ? NULL : cJSON_GetObjectItemCaseSensitive(r->json, "data");
  if (!cJSON_IsArray(data)) {
    log_ctx c = ctx_of(x);
    log_warn(&c, "the earlier rounds' steps and files are left out: GET /conversations/%s/items: %s", x->conv,
             r->err ? r->errmsg : "not a list");
    fetch(x);
    return;
  }
  /* Newest first: stop at the turn's user message, then add oldest first. */
  const cJSON *mine[RSP_ITEMS_PAGE], *it;
  size_t n = 0;
  cJSON_ArrayForEach(it, data) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(it, "type"), *ro = cJSON_GetObjectItemCaseSensitive(it, "role");
    if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "message") && cJSON_IsString(ro) &&
        !strcmp(ro->valuestring, "user"))
      break;
    if (n < RSP_ITEMS_PAGE) mine[n++] = it;
  }
  int rc = AW_OK;
  for (size_t i = n; !rc && i-- > 0;) rc = rsp_hosted_add_item(&x->all, mine[i]);
  if (!rc) rc = rsp_hosted_merge(&x->all, x->round);
  x->gathered = rc == AW_OK;
  if (rc) {
    log_ctx c = ctx_of(x);
    log_warn(&c, "the earlier rounds' steps and files are left out: %s", aw_strerror(rc));
  }
  fetch(x);
}

int rsp_extras_start(api_client *api, const char *conv, const char *event_id, rsp_hosted *round,
                     size_t inline_max, rsp_extras_cb cb, void *opaque, rsp_extras **out) {
  *out = NULL;
  rsp_extras *x = calloc(1, sizeof *x);
  if (!x) return AW_ENOMEM;
  x->api = api;
  x->round = round;
  x->inline_max = inline_max;
  x->cb = cb;
  x->opaque = opaque;
  snprintf(x->event_id, sizeof x->event_id, "%s", event_id ? event_id : "");
  rsp_hosted_init(&x->all, round->want_steps);
  int rc;
  if (conv && conv[0]) {
    if (!rsp_id_ok(conv)) {
      rsp_extras_free(x);
      return AW_EINVAL;
    }
    snprintf(x->conv, sizeof x->conv, "%s", conv);
    char path[320];
    /* The includes only when steps are wanted: a compatible server may
     * not know them, and files need only the messages. */
    snprintf(path, sizeof path, "/conversations/%s/items?order=desc&limit=%d%s", conv, RSP_ITEMS_PAGE,
             round->want_steps
                 ? "&include[]=file_search_call.results&include[]=code_interpreter_call.outputs"
                 : "");
    rc = api_request(api, "GET", path, NULL, 1, on_items, x, &x->call);
  } else {
    /* This round only: the fetch's callback never comes inside gf_start. */
    const gf_ref *refs = NULL;
    size_t nrefs = 0;
    rc = rsp_hosted_build(round, &x->steps, &x->nsteps, &refs, &nrefs);
    if (!rc) rc = gf_start(api, refs, nrefs, inline_max, on_files, x, &x->gf);
  }
  if (rc) {
    x->call = NULL;
    x->gf = NULL;
    rsp_extras_free(x);
    return rc;
  }
  *out = x;
  return AW_OK;
}

void rsp_extras_free(rsp_extras *x) {
  if (!x) return;
  api_call_cancel(x->call);
  gf_free(x->gf);
  rsp_hosted_free(&x->all);
  free(x);
}
