/* degrade.h -- an event's outcome made to fit Kafka's size limits (prefix
 * odg_).
 *
 * A record larger than the producer's message.max.bytes or the topic's
 * max.message.bytes is refused for good: producing it again never helps.
 * The outbox then produces a smaller record that still says what happened:
 *   - a dead letter keeps the original's size, its SHA-256 and as many of
 *     its leading bytes as fit (schemas/README.md, dlq);
 *   - a response becomes `failed` with error.code `response_too_large`,
 *     without the messages, keeping the ids, backend handles and timings.
 * Pure functions (no I/O): any thread. */
#ifndef AW_OUTBOX_DEGRADE_H
#define AW_OUTBOX_DEGRADE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "contract.h"

/** The error code of a response that did not fit. */
#define ODG_RESPONSE_TOO_LARGE "response_too_large"

/** Lower-case hex SHA-256 of data (out: 65 bytes with the NUL). */
void odg_sha256_hex(const void *data, size_t len, char out[65]);

/** Append to out the dead letter d encoded in at most max bytes: whole when
 *  it fits, else degraded (d->original cut to the leading bytes that fit,
 *  original_size and original_sha256 set).  *degraded says which.  AW_ETOOBIG
 *  when not even the envelope with no original byte fits; AW_EINVAL for a
 *  d that contract_dlq_encode refuses.  On failure out is as buf_append
 *  leaves it. */
int odg_dlq_encode_within(const contract_dlq *d, size_t max, buf *out, int *degraded) AW_MUST_CHECK;

/** Append to out the `failed` response that replaces an answer of
 *  answer_bytes bytes that did not fit limit bytes (0: the limit is the
 *  topic's max.message.bytes, unknown here, and the broker refused it): r's
 *  ids, backend handles and timings, no messages or tool calls, error
 *  response_too_large. */
int odg_response_too_large(const contract_response *r, size_t answer_bytes, size_t limit,
                           buf *out) AW_MUST_CHECK;

#endif
