/* event_claim.h -- which message an event_id belongs to (prefix evc_).
 *
 * The event_id is the producer's idempotency key.  The fleet remembers in
 * Redis the event_ids it answered (the outcome record, ev:<id>) and those it
 * started (the progress record, evp:<id>), so that an event delivered again
 * is skipped or recovered instead of answered twice.  Those records must not
 * let one message decide the fate of another that carries the same id (a
 * malformed event with someone's future id would otherwise silence the real
 * one for worker.outcome_ttl_s).  So:
 *   - only an accepted event records anything: a rejected one (malformed,
 *     invalid, unknown assistant, refused override, ...) claims no id
 *     (event.c);
 *   - every record of an accepted event carries a digest of what it asked
 *     (evc_digest), and a later event with the same id in the conversation
 *     is skipped (outcome) or recovered (progress) only when its digest is
 *     the same; a different one is answered `rejected` with EVC_CODE
 *     (and dead-lettered), never skipped silently;
 *   - a record written before digests existed keeps the old behaviour
 *     (skipped / recovered), so an upgrade answers nothing twice.
 *
 * What the digest covers.  A producer's retry re-sends identical bytes, and
 * identical bytes decode to identical fields, so a digest of either
 * recognises retries.  The raw bytes would also tell apart two encodings of
 * one message (another msgpack library, another key order, `content` as a
 * string or as one text part, an unknown key such as a send time): the same
 * message re-published by an application that re-encodes it would be
 * refused as a reuse.  So the digest is SHA-256 over a length-prefixed
 * serialisation of the decoded fields the turn is made of: event_id,
 * conversation_id, assistant, every content part (type, text, detail; an
 * inline image's bytes, media type and name), the attachments (tools, file
 * id or bytes, media type and name), instructions, additional_instructions
 * (absent differs from "") and the metadata pairs sorted by key.  Left
 * out: `stream` and `include_steps` (how the answer is delivered, not
 * what is asked) and keys the decoder ignores.  A
 * conversation request of another kind (history, append, ...) digests its
 * kind and every field of that kind instead of the message's (not
 * `assistant`, which it ignores), so an `append` and a `history` reusing one
 * event_id never match; a message's digest is what it was before kinds.
 *
 * Record values (Redis strings; the "d:" parts are absent in old records):
 *   outcome   "<status> <turn handle or -> d:<digest> <answered, unix ms>"
 *   progress  "d:<digest>:<claimed, unix ms> <checkpoint or ->"
 * conv_store.c keeps the progress prefix when it replaces the checkpoint
 * (its script matches "^d:%x+:%d+ ").
 *
 * Pure (no I/O); evc_digest allocates a hash context.  Any thread.
 */
#ifndef AW_EVENT_CLAIM_H
#define AW_EVENT_CLAIM_H

#include <stddef.h>
#include <stdint.h>

#include "aw_error.h"
#include "contract.h"

#define EVC_DIGEST_HEX 65   /* SHA-256 in lower-case hex, NUL included */
#define EVC_CODE "event_id_reused"
/* Longest progress prefix: "d:" + 64 hex + ":" + 20 digits + " " */
#define EVC_PROGRESS_PREFIX_MAX 88

/** The digest of what request q asks (see above) into out.  AW_ENOMEM
 *  (retry) when the hash context cannot be had; AW_ETOOBIG for more
 *  metadata pairs than any decoded request has. */
int evc_digest(const contract_request *q, char out[EVC_DIGEST_HEX]) AW_MUST_CHECK;

/** The outcome record of an accepted event.  AW_ETOOBIG if it does not fit
 *  n, AW_EINVAL without a digest. */
int evc_outcome_value(char *out, size_t n, const char *status, const char *turn, const char *digest,
                      int64_t at_ms) AW_MUST_CHECK;

/** The progress record an accepted event claims ("d:<digest>:<ms> -"). */
int evc_progress_claim_value(char *out, size_t n, const char *digest, int64_t at_ms) AW_MUST_CHECK;

typedef enum evc_verdict {
  EVC_NEW = 0,  /* no record: the event is new (the claim is ours) */
  EVC_RECOVER,  /* started before by the same message (or an old record): recover its turn */
  EVC_ANSWERED, /* answered before by the same message (or an old record): skip it */
  EVC_REUSED,   /* the id belongs to a different message: reject (EVC_CODE) */
} evc_verdict;

typedef struct evc_decision {
  evc_verdict verdict;
  int answered;           /* REUSED: 1 the other message was answered, 0 it was started */
  int64_t at_ms;          /* REUSED: when (0: unknown) */
  const char *checkpoint; /* RECOVER: the backend's checkpoint, pointing into progress;
                             NULL when the record holds none ("-") */
  size_t checkpoint_len;
} evc_decision;

/** Decide what an accepted event with this digest does, from the records
 *  read at its lookup: outcome (the outcome record, "" when absent) and
 *  progress (the progress record as it was before this lookup's claim, ""
 *  when the claim created it).  The outcome decides first. */
void evc_decide(const char *outcome, const char *progress, const char *digest, evc_decision *d);

/** The rejection message of a REUSED decision into out (truncated to n):
 *  names the id and says when the other message used it. */
void evc_reused_message(char *out, size_t n, const char *event_id, const evc_decision *d);

#endif
