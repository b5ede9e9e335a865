/* sim_model.h -- the deterministic scripted "model" (prefix smodel_).
 *
 * The answer is a pure function of (last user message, instructions,
 * additional instructions, token count): no clock, no randomness, so tests
 * can assert on it.  A token is a word; the answer has exactly n_tokens
 * words separated by single spaces, which is also how it is streamed (one
 * word per thread.message.delta).  Shape, for "How do I reset my password?"
 * and instructions "Provide support based on the latest documentation.":
 *   To reset your password, open the password settings page, ...
 *   (instructions: Provide support based on the latest documentation.)
 * The tags are dropped when n_tokens is too small to hold them.
 *
 * @locality any thread (no shared state).
 */
#ifndef SIM_MODEL_H
#define SIM_MODEL_H

#include <stddef.h>

/** Build the answer; returns a malloc'd string (NULL on ENOMEM).
 *  Any input may be NULL. n_tokens >= 1. */
char *smodel_answer(const char *user_text, const char *instructions, const char *additional,
                    int n_tokens);
/** Words in s (whitespace-separated); 0 for NULL. Used as the token count. */
int smodel_count_tokens(const char *s);

#endif
