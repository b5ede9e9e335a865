/* sim_turn.h -- the scripted model's next move in a turn (prefix sturn_).
 *
 * The Responses API (which keeps the history in a conversation or a chain
 * of responses) and Chat Completions (whose client sends the whole history
 * with every request) ask the model the same question: given the history so
 * far, what comes next?  The answer is a pure function of the history, the
 * instructions and the tools, decided here once for both:
 *  - the turn's question is the last user message;
 *  - it decides the rounds of function calls (stools_plan: "twice", "two
 *    rounds", parallel_tool_calls false...);
 *  - a history that ends with function outputs continues the turn: the
 *    rounds already made are the groups of consecutive function calls after
 *    the user message, and while fewer than planned were made the next round
 *    is due;
 *  - once every round was made, the answer is built from all the outputs
 *    after the user message, in order (stools_answer), labelled by their
 *    calls (the city of a get_weather call, else the function name);
 *  - with no call to make, the scripted answer (smodel_answer).
 *
 * History items are in the Responses API's stored form (the Chat route
 * converts its messages): messages {role, content: [{type, text}]},
 * {type: "function_call", call_id, name, arguments} and
 * {type: "function_call_output", call_id, output}.  Tools and tool_choice
 * are in the Assistants / Chat shape stools_plan reads
 * ({type: "function", function: {name}}).
 *
 * @locality any thread (no shared state).
 */
#ifndef SIM_TURN_H
#define SIM_TURN_H

#include <cjson/cJSON.h>
#include "aw_error.h"

typedef struct sturn {
  cJSON *calls;     /* the round to make now, [{name, arguments, label}]; NULL: answer */
  char *answer;     /* the answer when calls is NULL (malloc'd) */
  int tokens;       /* words of answer */
  int from_outputs; /* answer was built from the turn's function outputs */
  int user_tokens;  /* words of the turn's user message */
  int outputs;      /* function outputs the answer was built from */
} sturn;

/** Decide the next move from hist (borrowed).  instructions, tools and
 *  choice may be NULL; parallel is parallel_tool_calls; answer_tokens is
 *  the length of a scripted answer.  Fills out (sturn_clear frees it);
 *  AW_ENOMEM leaves it empty. */
int sturn_decide(const cJSON *hist, const char *instructions, const cJSON *tools, const cJSON *choice, int parallel,
                 int answer_tokens, sturn *out) AW_MUST_CHECK;
/** Free what out holds and zero it. */
void sturn_clear(sturn *t);

#endif
