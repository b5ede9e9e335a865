/* cli.h -- the client subcommands `send`, the conversation requests
 * (`history`, `append`, `reset`, `delete`, `cancel`) and `tail` (prefix
 * cmd_, helpers cli_; the request/response round trip is cli_request.h).
 *
 * Both are blocking command-line tools for people and scripts: they use
 * librdkafka's blocking calls, print JSON lines on stdout and diagnostics on
 * stderr.  main() dispatches to them with argv[0] being the subcommand name
 * (i.e. main passes argc - 1, argv + 1).
 *
 * Exit codes: send and the conversation requests: 0 the response's status
 * is "completed", 1 any other status, 2 usage / configuration / Kafka errors
 * or timeout.  tail: 0 when
 * stopped (signal, --max, --timeout-ms), 2 on errors.
 */
#ifndef AW_CLI_H
#define AW_CLI_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>
#include "aw_error.h"

/** `assistant-worker send ...`: publish one request and wait for its answer. */
int cmd_send_main(int argc, char **argv);

/** `assistant-worker history|append|reset|delete|cancel ...` (argv[0] names
 *  the command): publish one conversation request and wait for its answer. */
int cmd_conv_main(int argc, char **argv);

/** `assistant-worker tail ...`: print a topic's messages as JSON lines. */
int cmd_tail_main(int argc, char **argv);

/** `assistant-worker file put|get|rm|ls ...`: the Files API (cmd_file.c;
 *  exit 0 done, 1 the API refused or failed, 2 usage / configuration). */
int cmd_file_main(int argc, char **argv);

/** `assistant-worker sync [--config FILE]`: the knowledge sync once
 *  (cmd_sync.c, kb_sync.h; exit 0 done, 1 a document failed, 2 usage /
 *  configuration / infrastructure). */
int cmd_sync_main(int argc, char **argv);

/** Assign every partition of the ntopics topics to consumer rk.
 *  from_beginning: start at the log start; otherwise start at each
 *  partition's high watermark as queried *now* (an explicit offset, not the
 *  logical OFFSET_END that would be resolved later), so that anything
 *  produced after this call returns is seen.  Waits up to timeout_ms for
 *  metadata; AW_ENOTFOUND for a topic that does not exist, AW_EKAFKA or
 *  AW_ETIMEDOUT otherwise.  On success *out (caller destroys) is the
 *  assignment with the start offsets. */
int cli_assign_all(rd_kafka_t *rk, const char *const *topics, int ntopics, int from_beginning,
                   int timeout_ms, rd_kafka_topic_partition_list_t **out, char *errstr,
                   size_t errstr_size) AW_MUST_CHECK;

/** Standard base64 of n bytes (malloc'd, NUL-terminated; NULL when out of
 *  memory). */
char *cli_base64(const void *p, size_t n);

/** Is p[0..n) valid UTF-8 without NUL bytes? */
int cli_utf8_ok(const void *p, size_t n);

/** Milliseconds on the monotonic clock. */
long long cli_now_ms(void);

#endif
