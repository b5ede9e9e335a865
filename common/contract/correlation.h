/* correlation.h -- unguessable, authenticated tool-call correlation ids
 * (prefix corr_).
 *
 * A tool request carries a correlation id; the tool service copies it into
 * its reply.  Any worker may consume the reply, so the id must let a worker
 * check, without trusting the replier, that the reply answers exactly the
 * call it names:
 *
 *   id  = "tc1." base64url-nopad( nonce[16] | deadline_ms[8, big endian] | tag[16] )
 *   tag = HMAC-SHA256(secret, "tc1" 0x00 | nonce | deadline |
 *                     len32 conversation_id | conversation_id |
 *                     len32 run_id | run_id | len32 tool_call_id | tool_call_id)[0..16)
 *
 * 58 characters, [A-Za-z0-9_-] after the prefix.  The nonce comes from
 * getrandom(2), so ids cannot be guessed; the tag binds the id to one
 * (conversation, run, tool call) and its deadline, so a reply cannot be
 * forged or moved into another run, and a stale id cannot be given a new
 * deadline.  Ids stay valid across worker restarts and across workers that
 * share the secret.  The id is not secret from the tool service (it has to
 * echo it), but it is not stored anywhere in clear: the Redis record of a
 * pending call is keyed by corr_digest(id).
 *
 * Pinned ids ("tc2.", corr_new_pinned) bind one more id: the topic the
 * reply must be published to (the function's reply topic), framed like the
 * others after tool_call_id under the version "tc2".  A worker checks a
 * reply's id against the topic it consumed the reply from, so a reply for a
 * call pinned to one topic is refused on any other, without any state.
 * The worker makes only pinned ids; tc1 ids stay for older records and
 * tests.
 *
 * Key rotation: verify accepts ids made with the current or the previous
 * secret; new ids always use the current one.  Roll a new secret out as
 * "current" with the old one as "previous", and drop "previous" once no
 * call made before the roll can still be pending (the longest tool
 * deadline).
 *
 * Threads: no shared state; a corr_key may be used from any number of
 * threads once initialised.  The secret is never logged; corr_key_clear()
 * wipes it.
 */
#ifndef AW_CORRELATION_H
#define AW_CORRELATION_H

#include <stddef.h>
#include <stdint.h>
#include "aw_error.h"
#include "hmac_key.h"

#define CORR_PREFIX "tc1."
#define CORR_PREFIX_PINNED "tc2."  /* corr_new_pinned: the reply topic bound too */
#define CORR_ID_LEN 58           /* strlen of every id corr_new makes */
#define CORR_ID_SIZE (CORR_ID_LEN + 1)
#define CORR_MIN_SECRET 16
#define CORR_MAX_BOUND_ID 256    /* longest conversation / run / tool call id bound */
#define CORR_DIGEST_SIZE 33      /* 32 hex digits + NUL */

/* The current and previous secrets (hmac_key.h). */
typedef hkey_ring corr_key;

/** Set the current secret (>= CORR_MIN_SECRET bytes, else AW_EINVAL) and
 *  forget any previous one. */
int corr_key_init(corr_key *k, const void *secret, size_t len) AW_MUST_CHECK;

/** Add the previous secret (>= CORR_MIN_SECRET bytes), accepted by
 *  corr_verify only.  NULL / 0 removes it. */
int corr_key_set_previous(corr_key *k, const void *secret, size_t len) AW_MUST_CHECK;

/** Wipe both secrets (OPENSSL_cleanse). */
void corr_key_clear(corr_key *k);

/** Make a new id for one tool call into out (outsz >= CORR_ID_SIZE).
 *  AW_EINVAL: uninitialised key, NULL or empty or longer than
 *  CORR_MAX_BOUND_ID ids, deadline_ms < 0, out too small; AW_EIO: the
 *  kernel gave no random bytes; AW_EFATAL: OpenSSL failed. */
int corr_new(const corr_key *k, const char *conversation_id, const char *run_id,
             const char *tool_call_id, int64_t deadline_ms, char *out, size_t outsz) AW_MUST_CHECK;

/** Check that id was made by corr_new with the current or previous secret
 *  for exactly these conversation / run / tool call ids.  AW_OK and the
 *  deadline it carries in *deadline_ms_out (may be NULL); AW_EINVAL for a
 *  malformed id (wrong prefix, length or alphabet, non-canonical base64) or
 *  a tag that does not match (compared in constant time).  Whether the
 *  deadline has passed is the caller's decision. */
int corr_verify(const corr_key *k, const char *id, const char *conversation_id, const char *run_id,
                const char *tool_call_id, int64_t *deadline_ms_out) AW_MUST_CHECK;

/** corr_new for a pinned id ("tc2."): also binds reply_topic (1..
 *  CORR_MAX_BOUND_ID bytes, else AW_EINVAL). */
int corr_new_pinned(const corr_key *k, const char *conversation_id, const char *run_id, const char *tool_call_id,
                    const char *reply_topic, int64_t deadline_ms, char *out, size_t outsz) AW_MUST_CHECK;

/** corr_verify for a pinned id: AW_OK only for a "tc2." id made by
 *  corr_new_pinned for exactly these ids and this reply topic (a "tc1." id
 *  is AW_EINVAL here). */
int corr_verify_pinned(const corr_key *k, const char *id, const char *conversation_id, const char *run_id,
                       const char *tool_call_id, const char *reply_topic, int64_t *deadline_ms_out) AW_MUST_CHECK;

/** A short stable digest of any id string: the first 16 bytes of SHA-256(id)
 *  as 32 lowercase hex digits, NUL-terminated.  Used as the Redis key of a
 *  pending call, so that Redis never holds a usable id.  AW_EINVAL for NULL,
 *  AW_EFATAL if OpenSSL fails. */
int corr_digest(const char *id, char out[CORR_DIGEST_SIZE]) AW_MUST_CHECK;

#endif
