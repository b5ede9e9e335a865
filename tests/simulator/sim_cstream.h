/* sim_cstream.h -- the answer of one chat completion, paced (prefix scstream_).
 *
 * A chat completion keeps nothing on the server: sim_chat decides at once
 * what the model says (a text, or a round of tool calls), and this reader
 * writes it out, as the connection's MHD content reader:
 *  - SSE mode: `data: {chat.completion.chunk}` lines: the role chunk, one
 *    chunk per word of the text (with its leading space) or, per tool call,
 *    one chunk with its index, id, type, name and empty arguments followed
 *    by one chunk per piece of the arguments (runs of word characters and
 *    of punctuation), the finish chunk, the usage chunk (choices: []) when
 *    include_usage, then `data: [DONE]`;
 *  - JSON mode: the chat.completion object.
 * Each content chunk after the first waits token_delay_ms (a JSON answer
 * waits that long per completion token), suspending the connection, so
 * pacing costs no thread.  Nothing is produced ahead: memory
 * is the struct and one chunk.  An injected drop closes the connection after
 * 3 content chunks (1 when the text has fewer than 4 words).
 *
 * With --record, the line gets the chunks as stream_events
 * {"event": null, "data": chunk} (no `event:` line is sent) and
 * {"event": null, "data": "[DONE]"}, or the object as response_body.
 *
 * @locality MHD threads; scstream_new from the request handler.
 */
#ifndef SIM_CSTREAM_H
#define SIM_CSTREAM_H

#include <stdint.h>
#include <sys/types.h>
#include <microhttpd.h>
#include <cjson/cJSON.h>

typedef struct scstream scstream;

typedef enum { SCSTREAM_SSE = 0, SCSTREAM_JSON } scstream_mode;

/** What the model answers (sim_chat fills it). */
typedef struct scstream_answer {
  char id[48];        /* "chatcmpl-..." */
  char model[257];    /* echoed from the request */
  long long created;  /* unix seconds */
  char *text;         /* the content (NULL with calls); taken */
  cJSON *calls;       /* [{id, name, arguments}] or NULL; taken */
  const char *finish; /* "stop" | "length" | "tool_calls" (static) */
  int prompt_tokens, completion_tokens;
  int cached_tokens;     /* of prompt_tokens (usage.prompt_tokens_details) */
  int reasoning_tokens;  /* of completion_tokens (usage.completion_tokens_details) */
  int include_usage;  /* SSE: usage: null on each chunk, then the usage chunk */
} scstream_answer;

/** A reader of a's answer: takes a->text, a->calls (NULLed) and rec (the
 *  --record line, may be NULL).  drop: close after a few content chunks
 *  (fault injection).  NULL on ENOMEM (all taken things freed). */
scstream *scstream_new(scstream_answer *a, scstream_mode mode, int drop, cJSON *rec);
/** Tell the reader its connection (needed to suspend it). */
void scstream_attach(scstream *st, struct MHD_Connection *c);
/** MHD_ContentReaderCallback. */
ssize_t scstream_read(void *cls, uint64_t pos, char *out, size_t max);
/** MHD_ContentReaderFreeCallback: writes the record. */
void scstream_free(void *cls);
/** Content-Type of the reader's answer. */
const char *scstream_content_type(const scstream *st);

#endif
