/* overrides.c -- the override policy (see overrides.h). */
#include "overrides.h"

#include <stdio.h>
#include <string.h>

static const struct {
  unsigned bit;
  const char *field;
} fields[] = {
    {WKOV_INSTRUCTIONS, "instructions"},
    {WKOV_ADDITIONAL_INSTRUCTIONS, "additional_instructions"},
};

unsigned wkov_bit(const char *field) {
  for (size_t i = 0; field && i < sizeof fields / sizeof fields[0]; i++)
    if (strcmp(fields[i].field, field) == 0) return fields[i].bit;
  return 0;
}

const char *wkov_field(unsigned bit) {
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (fields[i].bit == bit) return fields[i].field;
  return NULL;
}

int wkov_check(const contract_request *q, const wkov_policy *p, const char **field, char *msg, size_t n) {
  *field = NULL;
  if (msg && n) msg[0] = '\0';
  /* Overrides change a turn: the other kinds (history, append, ...) start
   * none, carry no instructions and may name no assistant (NULL). */
  if (q->kind != CONTRACT_KIND_MESSAGE) return AW_OK;
  /* The decoder bounds the assistant name (256 bytes); the message quotes
   * at most 128 of it so the rest of the sentence always fits. */
  if (strncmp(q->assistant, "asst_", 5) == 0 && !p->allow_assistant_ids) {
    *field = "assistant";
    return aw_seterr(AW_EINVAL, msg, n,
                     "assistant: '%.128s' is an Assistants API id, and this worker only runs its configured "
                     "assistants (worker.allow_assistant_ids is false): name a configured assistant",
                     q->assistant);
  }
  const unsigned used[] = {q->instructions ? WKOV_INSTRUCTIONS : 0u,
                           q->additional_instructions ? WKOV_ADDITIONAL_INSTRUCTIONS : 0u};
  for (size_t i = 0; i < sizeof used / sizeof used[0]; i++) {
    if (!used[i] || (p->allowed & used[i])) continue;
    *field = wkov_field(used[i]);
    return aw_seterr(AW_EINVAL, msg, n,
                     "%s: assistant '%.128s' does not let a request override its %s (assistants[].allow_overrides%s)",
                     *field, q->assistant, *field,
                     strncmp(q->assistant, "asst_", 5) == 0 ? "; an asst_ id request may use additional_instructions only"
                                                            : "");
  }
  return AW_OK;
}
