/* chat_history.c -- a chat turn's side of the history port (see chat_int.h
 * and chat_turn.c): the load every turn starts with and what it finds (the
 * event answered already: replay; a round waiting for outputs: its calls
 * again; outputs for the round that waits: the continuation), the pending
 * round saved between tool rounds, and the commit of a whole turn.
 *
 * The port has no cancel: while one of its calls is out (store_busy), a
 * cancelled turn stays allocated and is freed by that call's callback
 * (chat_turn_store_back).
 */
#include "chat_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

static const char *nz(const char *s) { return s && s[0] ? s : NULL; }

/* ==== committing and saving rounds ============================================================ */

static void on_committed(void *opaque, int err, int applied) {
  chat_turn *t = opaque;
  if (chat_turn_store_back(t)) return;
  if (err) {
    chat_turn_seterr(t, AW_EREDIS, 0, NULL, "history: could not commit the turn (%s); it will be generated again",
                     aw_strerror(err));
    chat_turn_finish(t);
    return;
  }
  if (!applied) {
    /* Another attempt committed this event first: answer with its turn. */
    log_ctx ctx = chat_turn_ctx(t);
    log_warn(&ctx, "the event's turn was committed already; answering with the stored one");
    t->reloaded = 1;
    chat_turn_load(t);
    return;
  }
  chat_turn_finish(t);
}

/* Append the final assistant message and commit the whole turn. */
void chat_turn_commit(chat_turn *t) {
  cJSON *am = NULL;
  size_t len = 0;
  int rc = chat_json_assistant_message(t->answer, NULL, 0, &am);
  if (!rc && !cJSON_AddItemToArray(t->cur, am)) {
    cJSON_Delete(am);
    rc = AW_ENOMEM;
  }
  /* The committed turn keeps "[image]" in place of the user's images:
   * later turns see that there was one, the history stays small.  (A
   * pending round keeps them: its continuation is the same turn.) */
  if (!rc && chat_msgs_strip_images(t->cur) < 0) rc = AW_ENOMEM;
  int completed = t->status && !strcmp(t->status, "completed");
  chat_record r = {.event_id = t->event_id, .msgs = t->cur, .gen = -1, .id = nz(t->turn_id),
                   .status = completed ? NULL : t->status, .error_code = completed ? NULL : nz(t->error_code)};
  r.u = t->pending_u;
  r.at = (int64_t)time(NULL); /* the history's created_at; readers of older turns see 0 */
  contract_usage mine = chat_turn_usage(t);
  chat_usage_add(&r.u, &mine);
  if (!rc) rc = chat_record_format(&r, &t->record, &len);
  chat_turn_to(t, CHAT_S_COMMIT);
  const be_history *h = t->be->history;
  if (!rc) {
    t->store_busy = 1;
    rc = h->commit(h->self, t->conversation_id, t->event_id, t->record, len, on_committed, t);
    if (rc) {
      t->store_busy = 0;
      rc = AW_EREDIS;
    }
  }
  if (rc) {
    chat_turn_seterr(t, rc, 0, NULL, "history: could not commit the turn (%s)", aw_strerror(rc));
    chat_turn_finish(t);
  }
}

static void on_round_saved(void *opaque, int err, int applied) {
  chat_turn *t = opaque;
  (void)applied;
  if (chat_turn_store_back(t)) return;
  if (err) {
    chat_turn_seterr(t, AW_EREDIS, 0, NULL, "history: could not save the tool round (%s)", aw_strerror(err));
    chat_turn_finish(t);
    return;
  }
  if (chat_turn_checkpoint(t)) return;
  t->end_calls = 1;
  chat_turn_finish(t);
}

/* The model called functions: keep the round as the pending turn, then
 * hand the calls out. */
void chat_turn_save_round(chat_turn *t) {
  cJSON *am = NULL;
  size_t len = 0;
  int rc = chat_json_assistant_message(t->answer, t->calls, t->ncalls, &am);
  if (!rc && !cJSON_AddItemToArray(t->cur, am)) {
    cJSON_Delete(am);
    rc = AW_ENOMEM;
  }
  t->rounds = chat_msgs_rounds(t->cur);
  chat_record r = {.event_id = t->event_id, .msgs = t->cur, .gen = t->gen};
  r.ul = chat_turn_usage(t);
  r.u = t->pending_u;
  chat_usage_add(&r.u, &r.ul);
  if (!rc) rc = chat_record_format(&r, &t->record, &len);
  chat_turn_to(t, CHAT_S_SAVE);
  const be_history *h = t->be->history;
  if (!rc) {
    t->store_busy = 1;
    rc = h->save_pending(h->self, t->conversation_id, t->event_id, t->record, len, on_round_saved, t);
    if (rc) {
      t->store_busy = 0;
      rc = AW_EREDIS;
    }
  }
  if (rc) {
    chat_turn_seterr(t, rc, 0, NULL, "history: could not save the tool round (%s)", aw_strerror(rc));
    chat_turn_finish(t);
  }
}

/* ==== after the load ================================================================================ */

/* The event's turn is in the history: answer with it, generate nothing. */
static void turn_replay_committed(chat_turn *t, const be_history_view *v) {
  chat_record r;
  int found = 0;
  for (size_t i = v->nturns; !found && i-- > 0;) {
    if (chat_record_parse(v->turns[i], v->lens[i], &r) != AW_OK) continue;
    if (!strcmp(r.event_id, t->event_id)) found = 1;
    else chat_record_free(&r);
  }
  if (!found) {
    if (t->reloaded) {
      chat_turn_finish(t); /* ours is as good as any: the stored one is out of reach */
      return;
    }
    /* Committed, then pushed out of the newest turns (or past the history's
     * caps): the text is gone.  Honest, not invented. */
    t->replayed = 1;
    t->answer = NULL;
    t->status = "completed";
    snprintf(t->errmsg, sizeof t->errmsg,
             "this event was answered earlier; its text is no longer among the conversation's stored turns");
    chat_turn_finish(t);
    return;
  }
  chat_record_free(&t->rec);
  t->rec = r;
  t->replayed = 1;
  /* A re-processed event whose turn was committed: its usage record did
   * not go out with it (else the event would be answered), so report what
   * the stored turn cost.  After our own commit lost a race (reloaded), ours
   * is what this call cost. */
  t->replay_u = t->reloaded ? chat_turn_usage(t) : r.u;
  t->answer = chat_msgs_final_text(r.msgs);
  t->status = r.status && !strcmp(r.status, "incomplete") ? "incomplete" : "completed";
  snprintf(t->error_code, sizeof t->error_code, "%s", r.status && r.error_code ? r.error_code : "");
  t->errmsg[0] = '\0';
  if (r.id) snprintf(t->turn_id, sizeof t->turn_id, "%s", r.id);
  if (t->deltas_total) {
    /* We streamed a text that lost the race: the stored one replaces it. */
    t->gen++;
    if (chat_turn_checkpoint(t)) return;
  }
  chat_turn_finish(t);
}

/* The pending turn waits for outputs of calls it offered: offer them again. */
static void turn_offer_pending(chat_turn *t, chat_record *p) {
  chat_record_free(&t->rec);
  t->rec = *p;
  memset(p, 0, sizeof *p);
  size_t n = 0;
  int rc = chat_msgs_open_calls(t->rec.msgs, NULL, 0, &n);
  if (!rc) rc = (t->calls = calloc(n ? n : 1, sizeof *t->calls)) ? AW_OK : AW_ENOMEM;
  if (!rc) rc = chat_msgs_open_calls(t->rec.msgs, t->calls, n, &t->ncalls);
  if (rc || !t->ncalls) {
    chat_turn_seterr(t, rc ? rc : AW_EPARSE, 0, NULL, "the pending turn's calls cannot be read");
    chat_turn_finish(t);
    return;
  }
  t->rounds = chat_msgs_rounds(t->rec.msgs);
  if (t->rec.gen > t->gen) t->gen = t->rec.gen;
  t->replayed = 1;
  /* Nobody reported these requests yet: a start picks up every round of
   * the turn (a crash while it waited), a continuation only the round an
   * earlier attempt made after the outputs it was given. */
  t->replay_u = t->mode == CHAT_TURN_START ? t->rec.u : t->rec.ul;
  t->end_calls = 1;
  if (chat_checkpoint_format(t->checkpoint, sizeof t->checkpoint, t->gen, t->rounds)) t->checkpoint[0] = '\0';
  chat_turn_finish(t);
}

static void turn_state_lost(chat_turn *t, const char *why) {
  chat_turn_not_completed(t, "failed", "turn_state_lost",
                          "the turn's state between tool rounds is lost (%s); send the request again", why);
}

static int parse_pending(chat_turn *t, const be_history_view *v, chat_record *p) {
  if (!v->pending) return 0;
  if (chat_record_parse(v->pending, v->pending_len, p) == AW_OK && !strcmp(p->event_id, t->event_id)) return 1;
  chat_record_free(p);
  log_ctx ctx = chat_turn_ctx(t);
  log_warn(&ctx, "the event's pending turn cannot be read; ignored");
  return 0;
}

static void start_loaded(chat_turn *t, const be_history_view *v) {
  chat_record p;
  if (parse_pending(t, v, &p)) {
    size_t n = 0;
    if (chat_msgs_open_calls(p.msgs, NULL, 0, &n) == AW_OK && n) {
      /* An earlier attempt reached tool calls and saved them: no request. */
      turn_offer_pending(t, &p);
      return;
    }
    chat_record_free(&p);
  }
  t->cur = cJSON_CreateArray();
  if (!t->cur || !cJSON_AddItemToArray(t->cur, t->user)) {
    chat_turn_seterr(t, AW_ENOMEM, 0, NULL, "out of memory");
    chat_turn_finish(t);
    return;
  }
  t->user = NULL;
  t->rounds = 0;
  chat_turn_generate(t, v);
}

static void continue_loaded(chat_turn *t, const be_history_view *v) {
  chat_record p;
  char why[128];
  if (!parse_pending(t, v, &p)) {
    turn_state_lost(t, "no pending turn: it expired or was never saved");
    return;
  }
  switch (chat_pending_where(p.msgs, t->round, why, sizeof why)) {
  case CHAT_PENDING_LATER:
    turn_offer_pending(t, &p); /* the later calls, again */
    return;
  case CHAT_PENDING_LOST:
    chat_record_free(&p);
    turn_state_lost(t, why);
    return;
  case CHAT_PENDING_ANSWER:
    break;
  }
  /* Take the pending messages over and answer its calls in their order. */
  t->cur = cJSON_DetachItemFromObjectCaseSensitive(p.root, "m");
  t->pending_u = p.u;
  t->rounds = chat_msgs_rounds(t->cur);
  int rc = chat_msgs_add_outputs(t->cur, (const char *const *)t->out_ids, (const char *const *)t->out_texts, t->nouts);
  if (p.gen > t->cp_gen) t->gen = t->recover ? p.gen + 1 : p.gen;
  chat_record_free(&p);
  if (rc) {
    chat_turn_seterr(t, rc, 0, NULL, "could not add the outputs: %s", aw_strerror(rc));
    chat_turn_finish(t);
    return;
  }
  chat_turn_generate(t, v);
}

static void on_loaded(void *opaque, int err, const be_history_view *v) {
  chat_turn *t = opaque;
  if (chat_turn_store_back(t)) return;
  if (err || !v) {
    chat_turn_seterr(t, AW_EREDIS, 0, NULL, "history: could not load the conversation (%s)", aw_strerror(err));
    chat_turn_finish(t);
    return;
  }
  if (v->committed) turn_replay_committed(t, v);
  else if (t->reloaded) chat_turn_finish(t); /* the store disagrees with itself: ours stands */
  else if (t->mode == CHAT_TURN_START) start_loaded(t, v);
  else continue_loaded(t, v);
}

void chat_turn_load(chat_turn *t) {
  chat_turn_to(t, CHAT_S_LOAD);
  const be_history *h = t->be->history;
  t->store_busy = 1;
  /* A turn has two messages at least: max_msgs turns is more than the
   * budget can take, and the newest turns are where a replay looks. */
  int rc = h->load(h->self, t->conversation_id, t->event_id, (size_t)t->max_msgs, on_loaded, t);
  if (rc) {
    t->store_busy = 0;
    chat_turn_seterr(t, AW_EREDIS, 0, NULL, "history: could not load the conversation (%s)", aw_strerror(rc));
    chat_turn_finish(t);
  }
}

