/* tool_sign.h -- signed tool requests and tool replies (prefix tsig_).
 *
 * Why: anyone who may write to a tool-request topic can otherwise make a
 * tool service act, and anyone who may read it sees the correlation id and
 * can race the real service with a reply (the first reply of a call wins).
 * A key shared by the workers and their tool services (AW_TOOL_REQUEST_KEY,
 * separate from AW_TOOL_SECRET, which only the workers hold) closes both:
 *
 *  - the worker signs every tool request; a service verifies the signature
 *    and its timestamp before it acts, so an unsigned, forged, altered or
 *    old request is refused;
 *  - the service signs its reply over (correlation id, digest of the
 *    content); the worker dead-letters a reply without a valid signature
 *    before it is recorded, so a racer's reply loses and the genuine one,
 *    arriving later, is applied.
 *
 * Wire format (schemas/README.md, "Signatures", is the normative text; the
 * vectors in schemas/examples/tool-request-signature.json are checked by
 * tests/unit/test_tool_sign.c and by the Python helper of the integration
 * tests):
 *
 *   Kafka headers   aw-sig:    v1=<base64url, no padding, of HMAC-SHA256(key, M)>
 *                              (comma-separated when signed with two keys)
 *                   aw-sig-ts: unix milliseconds, decimal (requests only)
 *
 *   request  M = "aw-tool-request/v1" 0x00 | u64(ts_ms) | u64(deadline_ms) |
 *                u32(round) | s(correlation_id) | s(name) | s(tool_call_id) |
 *                s(conversation_id) | s(event_id) | s(thread_id) | s(run_id) |
 *                s(reply_topic) | s(arguments_json)
 *   reply    M = "aw-tool-reply/v1" 0x00 | s(correlation_id) | SHA-256(C)
 *            C = "output" 0x00 | s(output)   or   "error" 0x00 | s(code) | s(message)
 *
 *   u64 / u32: big-endian unsigned; s(x) = u32(byte length of x) | x, an
 *   absent optional field (event_id, thread_id, run_id) is "", an absent
 *   round is 0.
 *
 * Headers rather than fields of the value: the v1 value and its JSON
 * Schemas stay as they are (a service that does not verify yet reads the
 * same message), the signature is not part of what it signs (no "every
 * field but this one" rule), and the trace context already travels there.
 * Fields rather than the raw value bytes: a verifier needs only the decoded
 * message, in any language, and a bridge that re-encodes the map keeps it
 * verifiable.  The `arguments` map is derived from arguments_json and not
 * signed: tsig_request_verify checks that a present map is exactly the
 * conversion of the signed text (a nil map is fine: act on the text).
 *
 * Keys: at least TSIG_MIN_KEY bytes; a verifier holds the current key and,
 * while rotating, the previous one, and accepts a signature made with
 * either.  A signer with a previous key signs with both (two v1 entries),
 * so verifiers that know only one of them keep working during a rotation
 * (README.md, "Rotating AW_TOOL_REQUEST_KEY").
 *
 * Freshness: a request's ts must lie within max_skew_ms of the verifier's
 * clock, either way.  A replay inside that window is not detected here (it
 * is byte for byte the genuine request; its reply is already_answered at
 * the worker): a service whose function has side effects should remember
 * the correlation ids it served for that long.
 *
 * Errors: functions return AW_OK or a negative AW_E* code; a verification
 * failure is AW_EINVAL (class reject: never act on the message) with the
 * precise reason in *reason, one of the TSIG_R_* strings.  AW_EFATAL: the
 * crypto library failed; AW_ENOMEM.
 *
 * Depends on contract_tool.h (the decoded messages) and OpenSSL only, so a
 * tool service links it from awcommon without anything of the worker.
 * Threads: no shared state; a tsig_key may be used from any number of
 * threads once initialised.  Keys are never logged; tsig_key_clear wipes.
 */
#ifndef AW_TOOL_SIGN_H
#define AW_TOOL_SIGN_H

#include <stddef.h>
#include <stdint.h>
#include "aw_error.h"
#include "hmac_key.h"
#include "buf.h"
#include "contract_tool.h"

#define TSIG_HEADER "aw-sig"        /* Kafka header of the signature(s) */
#define TSIG_TS_HEADER "aw-sig-ts"  /* Kafka header of a request's timestamp */
#define TSIG_MIN_KEY 16
#define TSIG_MAX_KEY 512
#define TSIG_MAC_CHARS 43           /* base64url of 32 bytes, no padding */
#define TSIG_MAX_ENTRIES 4          /* v1 entries a verifier looks at */
#define TSIG_MAX_HEADER 512         /* longest aw-sig value a verifier reads */
/* "v1=" + 43, twice, with a comma: what a signer writes, NUL included. */
#define TSIG_HEADER_SIZE (2 * (3 + TSIG_MAC_CHARS) + 1 + 1)
#define TSIG_TS_SIZE 21             /* an int64 in decimal + NUL */
#define TSIG_DEFAULT_MAX_SKEW_MS 300000 /* 5 minutes */

/* Reasons a verification failed (*reason; also used as dead-letter codes'
 * details).  Stable strings: tests and logs match them. */
#define TSIG_R_MISSING "missing_signature"          /* no aw-sig (or, request: no aw-sig-ts) header */
#define TSIG_R_MALFORMED "malformed_signature"      /* a header that is not what the format says */
#define TSIG_R_VERSION "unsupported_signature_version" /* only entries of versions other than v1 */
#define TSIG_R_STALE "stale_signature"              /* ts older than now - max_skew_ms */
#define TSIG_R_FUTURE "future_signature"            /* ts newer than now + max_skew_ms */
#define TSIG_R_MISMATCH "bad_signature"             /* no entry matches any key: forged or altered */
#define TSIG_R_ARGUMENTS "arguments_mismatch"       /* arguments map differs from arguments_json */

/* The current and previous keys (hmac_key.h). */
typedef hkey_ring tsig_key;

/** Set the current key (TSIG_MIN_KEY..TSIG_MAX_KEY bytes, else AW_EINVAL)
 *  and forget any previous one. */
int tsig_key_init(tsig_key *k, const void *key, size_t len) AW_MUST_CHECK;

/** Add the previous key (same bounds); NULL / 0 removes it.  AW_EINVAL
 *  without a current key. */
int tsig_key_set_previous(tsig_key *k, const void *key, size_t len) AW_MUST_CHECK;

/** Wipe both keys (OPENSSL_cleanse). */
void tsig_key_clear(tsig_key *k);

/** Append the canonical byte string M of request r signed at ts_ms to out
 *  (for tests and tools; signing builds it internally).  AW_EINVAL for a
 *  NULL required field or negative ts / deadline; AW_ETOOBIG / AW_ENOMEM
 *  free out, as buf does. */
int tsig_request_message(const ctool_request *r, int64_t ts_ms, buf *out) AW_MUST_CHECK;

/** Sign request r at ts_ms: sig (TSIG_HEADER_SIZE) receives the aw-sig
 *  value, ts (TSIG_TS_SIZE) the aw-sig-ts value.  Signs with the current
 *  key, and with the previous one too when set ("v1=<cur>,v1=<prev>").
 *  r must hold what the verifier will decode: use
 *  tsig_request_sign_encoded on the encoded bytes when in doubt (the
 *  encoder replaces invalid UTF-8). */
int tsig_request_sign(const tsig_key *k, const ctool_request *r, int64_t ts_ms, char sig[TSIG_HEADER_SIZE],
                      char ts[TSIG_TS_SIZE]) AW_MUST_CHECK;

/** The same for an encoded tool request (decoded first, with the default
 *  size limit); the decoder's failures are returned as they are. */
int tsig_request_sign_encoded(const tsig_key *k, const void *value, size_t len, int64_t ts_ms,
                              char sig[TSIG_HEADER_SIZE], char ts[TSIG_TS_SIZE]) AW_MUST_CHECK;

/** Verify a decoded request against its headers' values (sig / ts: the
 *  header bytes, NULL when the header is absent; not NUL-terminated).
 *  |now_ms - ts| must be <= max_skew_ms (< 0: TSIG_DEFAULT_MAX_SKEW_MS);
 *  some v1 entry of sig must be the MAC of M under the current or the
 *  previous key; a non-nil arguments map must equal
 *  ctool_arguments_to_msgpack(arguments_json).  Checked in this order, so
 *  *reason (may be NULL) names the first failure: TSIG_R_MISSING,
 *  TSIG_R_MALFORMED, TSIG_R_VERSION, TSIG_R_STALE, TSIG_R_FUTURE,
 *  TSIG_R_MISMATCH, TSIG_R_ARGUMENTS (all AW_EINVAL); *reason is NULL on
 *  success.  AW_EINVAL (reason "internal_error") also for an uninitialised
 *  key or NULL r. */
int tsig_request_verify(const tsig_key *k, const ctool_request *r, const void *sig, size_t sig_len,
                        const void *ts, size_t ts_len, int64_t now_ms, int64_t max_skew_ms,
                        const char **reason) AW_MUST_CHECK;

/** Append the canonical byte string M of reply r (tests and tools). */
int tsig_reply_message(const ctool_reply *r, buf *out) AW_MUST_CHECK;

/** Sign reply r (exactly one of output / error_code set, as the decoder
 *  returns it): sig receives the aw-sig value (two entries with a previous
 *  key). */
int tsig_reply_sign(const tsig_key *k, const ctool_reply *r, char sig[TSIG_HEADER_SIZE]) AW_MUST_CHECK;

/** The same for an encoded reply (decoded first; its output may be up to
 *  len bytes). */
int tsig_reply_sign_encoded(const tsig_key *k, const void *value, size_t len,
                            char sig[TSIG_HEADER_SIZE]) AW_MUST_CHECK;

/** Verify a decoded reply against its aw-sig header value (NULL: absent).
 *  *reason: TSIG_R_MISSING, TSIG_R_MALFORMED, TSIG_R_VERSION or
 *  TSIG_R_MISMATCH (AW_EINVAL). */
int tsig_reply_verify(const tsig_key *k, const ctool_reply *r, const void *sig, size_t sig_len,
                      const char **reason) AW_MUST_CHECK;

/** Parse an aw-sig-ts value: 1..19 decimal digits, no sign, no leading
 *  zero (but "0"), <= INT64_MAX.  AW_EINVAL otherwise. */
int tsig_parse_ts(const void *ts, size_t len, int64_t *out) AW_MUST_CHECK;

#endif
