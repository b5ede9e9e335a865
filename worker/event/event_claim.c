/* event_claim.c -- digests and records of event_id claims (see
 * event_claim.h).
 *
 * Conversation requests (contract_kind other than message) are claimed like
 * messages, so their digest covers what they ask: the kind and every field
 * of it (history: limit, after, before, order; append: each message's role
 * and text parts; cancel: target_event_id), the ids and the metadata; not
 * the assistant, which those kinds ignore.  A message is serialised exactly
 * as before kinds existed, so records of the earlier release still match. */
#include "event_claim.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the digest ----------------------------------------------------------- */

/* One field: a tag byte, its length (4 bytes, big endian), its bytes.  The
 * tags keep absent fields apart from empty ones and fields from each other,
 * so no two requests share a serialisation. */
static int put(EVP_MD_CTX *x, unsigned char tag, const char *s, size_t n) {
  if (n > UINT32_MAX) return 0;
  unsigned char h[5] = {tag, (unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                        (unsigned char)n};
  return EVP_DigestUpdate(x, h, sizeof h) == 1 && (n == 0 || EVP_DigestUpdate(x, s, n) == 1);
}

static int put_str(EVP_MD_CTX *x, unsigned char tag, const char *s) { return !s || put(x, tag, s, strlen(s)); }

static int by_key(const void *a, const void *b) {
  const contract_kv *x = *(const contract_kv *const *)a, *y = *(const contract_kv *const *)b;
  return strcmp(x->key, y->key);
}

static int put_int(EVP_MD_CTX *x, unsigned char tag, long v) {
  char s[24];
  int n = snprintf(s, sizeof s, "%ld", v);
  return n > 0 && put(x, tag, s, (size_t)n);
}

static int put_parts(EVP_MD_CTX *x, const contract_part *parts, size_t nparts) {
  int ok = 1;
  for (size_t i = 0; ok && i < nparts; i++) {
    const contract_part *p = &parts[i];
    ok = put_int(x, 'P', (long)p->type) && put(x, 'T', p->text ? p->text : "", p->text ? p->text_len : 0) &&
         put_str(x, 'D', p->detail);
    /* An inline image (a different file is a different message); parts
     * without one serialise as before files existed. */
    if (ok && p->data)
      ok = put(x, 'X', p->data, p->data_len) && put_str(x, 'Y', p->media_type) && put_str(x, 'Z', p->filename);
  }
  return ok;
}

/* What a conversation request asks (kind != message): its kind and every
 * field of that kind.  Tagged with lower-case letters, none of which a
 * message uses, after the 'k' of the kind, so no request of one kind
 * serialises like a request of another, nor like a message. */
static int put_kind_fields(EVP_MD_CTX *x, const contract_request *q) {
  int ok = put_str(x, 'k', contract_kind_name(q->kind));
  switch (q->kind) {
  case CONTRACT_KIND_HISTORY:
    ok = ok && put_int(x, 'l', q->limit) && put_str(x, 'a', q->after) && put_str(x, 'b', q->before) &&
         put_int(x, 'o', q->order_asc);
    break;
  case CONTRACT_KIND_APPEND:
    for (size_t i = 0; ok && i < q->nmessages; i++) {
      const contract_in_message *m = &q->messages[i];
      /* The role (always set) starts each message, so parts cannot move
       * between messages unnoticed. */
      ok = put_str(x, 'r', m->role) && put_parts(x, m->parts, m->nparts);
    }
    break;
  case CONTRACT_KIND_CANCEL: ok = ok && put_str(x, 't', q->target_event_id); break;
  default: break;
  }
  return ok;
}

int evc_digest(const contract_request *q, char out[EVC_DIGEST_HEX]) {
  out[0] = '\0';
  EVP_MD_CTX *x = EVP_MD_CTX_new();
  if (!x) return AW_ENOMEM;
  /* A message's serialisation is the one of the first release (no kind),
   * so the records written before kinds existed still match.  The other
   * kinds leave the assistant out: they ignore it. */
  const int message = q->kind == CONTRACT_KIND_MESSAGE;
  int ok = EVP_DigestInit_ex(x, EVP_sha256(), NULL) == 1 && put(x, 'V', "aw-evd1", 7) &&
           put_str(x, 'E', q->event_id) && put_str(x, 'C', q->conversation_id) &&
           (message ? put_str(x, 'A', q->assistant) : put_kind_fields(x, q));
  ok = ok && put_parts(x, q->parts, q->nparts);
  /* Attachments, each opened by its tools ('G'); none: nothing, as before
   * they existed.  include_steps, like stream, is how the answer is told. */
  for (size_t i = 0; ok && i < q->nattachments; i++) {
    const contract_attachment *at = &q->attachments[i];
    ok = put_int(x, 'G', (long)at->tools) && put_str(x, 'F', at->file_id) &&
         (!at->data || put(x, 'X', at->data, at->data_len)) && put_str(x, 'Y', at->media_type) &&
         put_str(x, 'Z', at->filename);
  }
  ok = ok && put_str(x, 'I', q->instructions) && put_str(x, 'J', q->additional_instructions);
  /* Metadata is a map: its order is the encoder's, not the message's.  The
   * decoder refuses duplicate keys and more than a handful of pairs. */
  const contract_kv *sorted[64];
  size_t nm = q->nmetadata;
  if (nm > sizeof sorted / sizeof sorted[0]) {
    EVP_MD_CTX_free(x);
    return AW_ETOOBIG; /* never: the decoder allows 16 pairs */
  }
  for (size_t i = 0; i < nm; i++) sorted[i] = &q->metadata[i];
  if (nm > 1) qsort(sorted, nm, sizeof sorted[0], by_key);
  for (size_t i = 0; ok && i < nm; i++) {
    const char *v = sorted[i]->value; /* a nil value is kept as NULL */
    ok = put_str(x, 'K', sorted[i]->key) && (v ? put(x, 'M', v, strlen(v)) : put(x, 'N', "", 0));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  ok = ok && EVP_DigestFinal_ex(x, md, &mdlen) == 1 && mdlen == 32;
  EVP_MD_CTX_free(x);
  if (!ok) return AW_ENOMEM; /* libcrypto's SHA-256 fails only on memory */
  static const char hx[] = "0123456789abcdef";
  for (unsigned i = 0; i < 32; i++) {
    out[2 * i] = hx[md[i] >> 4];
    out[2 * i + 1] = hx[md[i] & 15];
  }
  out[64] = '\0';
  return AW_OK;
}

/* ---- record values ---------------------------------------------------------- */

static int digest_ok(const char *d, size_t n) {
  if (n != EVC_DIGEST_HEX - 1) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((d[i] >= '0' && d[i] <= '9') || (d[i] >= 'a' && d[i] <= 'f'))) return 0;
  return 1;
}

int evc_outcome_value(char *out, size_t n, const char *status, const char *turn, const char *digest, int64_t at_ms) {
  if (!digest || !digest_ok(digest, strlen(digest))) return AW_EINVAL;
  int k = snprintf(out, n, "%s %s d:%s %" PRId64, status, turn && *turn ? turn : "-", digest, at_ms);
  return (k < 0 || (size_t)k >= n) ? AW_ETOOBIG : AW_OK;
}

int evc_progress_claim_value(char *out, size_t n, const char *digest, int64_t at_ms) {
  if (!digest || !digest_ok(digest, strlen(digest))) return AW_EINVAL;
  int k = snprintf(out, n, "d:%s:%" PRId64 " -", digest, at_ms);
  return (k < 0 || (size_t)k >= n) ? AW_ETOOBIG : AW_OK;
}

/* Unix ms of s[0..n) (decimal digits only), 0 when it is not one. */
static int64_t ms_of(const char *s, size_t n) {
  if (n == 0 || n > 18) return 0;
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* A record's digest and time: outcome "<status> <turn> d:<hex> <ms>";
 * anything else (an old record) has none (*dig NULL). */
static void parse_outcome(const char *v, const char **dig, int64_t *at) {
  *dig = NULL;
  *at = 0;
  const char *sp1 = strchr(v, ' ');
  const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp2 || strncmp(sp2 + 1, "d:", 2) != 0) return;
  const char *d = sp2 + 3, *sp3 = strchr(d, ' ');
  if (!sp3 || !digest_ok(d, (size_t)(sp3 - d))) return;
  *dig = d;
  *at = ms_of(sp3 + 1, strlen(sp3 + 1));
}

/* progress "d:<hex>:<ms> <rest>": the digest, time and rest; anything else
 * (an old record: "-" or a checkpoint) is all rest, without a digest. */
static void parse_progress(const char *v, const char **dig, int64_t *at, const char **rest) {
  *dig = NULL;
  *at = 0;
  *rest = v;
  if (strncmp(v, "d:", 2) != 0) return;
  const char *d = v + 2, *colon = strchr(d, ':');
  if (!colon || !digest_ok(d, (size_t)(colon - d))) return;
  const char *sp = strchr(colon + 1, ' ');
  if (!sp) return;
  *dig = d;
  *at = ms_of(colon + 1, (size_t)(sp - colon - 1));
  *rest = sp + 1;
}

static int same(const char *recorded, const char *digest) {
  return digest && strncmp(recorded, digest, EVC_DIGEST_HEX - 1) == 0;
}

void evc_decide(const char *outcome, const char *progress, const char *digest, evc_decision *d) {
  memset(d, 0, sizeof *d);
  const char *dig;
  int64_t at;
  if (outcome && *outcome) {
    parse_outcome(outcome, &dig, &at);
    if (!dig || same(dig, digest)) {
      d->verdict = EVC_ANSWERED;
    } else {
      d->verdict = EVC_REUSED;
      d->answered = 1;
      d->at_ms = at;
    }
    return;
  }
  if (!progress || !*progress) {
    d->verdict = EVC_NEW;
    return;
  }
  const char *rest;
  parse_progress(progress, &dig, &at, &rest);
  if (dig && !same(dig, digest)) {
    d->verdict = EVC_REUSED;
    d->at_ms = at;
    return;
  }
  d->verdict = EVC_RECOVER;
  if (*rest && strcmp(rest, "-") != 0) {
    d->checkpoint = rest;
    d->checkpoint_len = strlen(rest);
  }
}

void evc_reused_message(char *out, size_t n, const char *event_id, const evc_decision *d) {
  char when[40] = "";
  if (d->at_ms > 0) {
    time_t t = (time_t)(d->at_ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, " at %Y-%m-%dT%H:%M:%SZ", &tm);
  }
  snprintf(out, n,
           "event_id '%.128s' was already used by a different message of this conversation (%s%s); an event_id "
           "names one message: send this one with a new event_id",
           event_id, d->answered ? "answered" : "started, not answered yet", when);
}
