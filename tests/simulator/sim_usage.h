/* sim_usage.h -- the tokens the simulator charged (prefix susage_).
 *
 * The simulator's own account of what it billed, for tests that check the
 * worker's usage records against it: every place that puts a `usage`
 * object into an answer charges it here, once per object (a run when it
 * ends, a response when it ends or is cancelled, a chat completion when its
 * usage chunk or its object is produced).  A chat stream that ends before
 * its usage chunk (a drop, a client gone) is charged nothing, as it reported
 * nothing.
 *
 * GET /admin/usage answers
 *   {"total": {requests, input_tokens, output_tokens, cached_tokens,
 *              reasoning_tokens, total_tokens},
 *    "models": {"<model>": {the same}},
 *    "charges": [{api, id, model, input_tokens, output_tokens, cached_tokens,
 *                 reasoning_tokens, total_tokens}]}   (the newest SUSAGE_KEEP, oldest first)
 * and ?model=M keeps that model only (total, models and charges).
 * /admin/reset zeroes it.
 *
 * Bounded: SUSAGE_MODELS models (further ones are counted under
 * "(other)"), the newest SUSAGE_KEEP charges.
 *
 * @locality any thread (one mutex).
 */
#ifndef SIM_USAGE_H
#define SIM_USAGE_H

#include <cjson/cJSON.h>

#define SUSAGE_MODELS 256
#define SUSAGE_KEEP 4096

/** Charge one usage object: api "runs" | "responses" | "chat", the
 *  object's id, the model it names, and its counts (cached part of input,
 *  reasoning part of output). */
void susage_charge(const char *api, const char *id, const char *model, long input, long output, long cached,
                   long reasoning);

/** The answer of GET /admin/usage (model NULL: all); caller deletes. */
cJSON *susage_to_json(const char *model);

/** Forget everything (POST /admin/reset). */
void susage_reset(void);

/** Does the model reason (and so report reasoning tokens)?  The o-series:
 *  a name starting with "o" and a digit (o1, o3-mini, o4-mini). */
int susage_reasoning_model(const char *model);

#endif
