/* sim_tools.h -- the scripted model's function calling (prefix stools_).
 *
 * Decides, as a pure function of the last user message, the instructions
 * and the run's tools, which function calls a run makes before it answers,
 * and builds the answer from the outputs the client submits.  No clock, no
 * randomness: a test knows the calls and the answer in advance.
 *
 * Rules (README.md, "Function calling"):
 *  - get_weather (when the run has a function tool of that name): every
 *    capitalised city of a built-in list found in the message is one call
 *    get_weather({"location":"<City>"}), in order of appearance;
 *  - any function tool: "call <name>" or "call <name> with <JSON object>"
 *    calls it with those arguments (or "{}");
 *  - tool_choice "none" makes no call; "required" or a named function
 *    forces one when the message asked for none;
 *  - "bad arguments" in the message: every arguments string is cut short,
 *    so it is not valid JSON;
 *  - parallel_tool_calls false: one call per round instead of all in one;
 *  - "twice" in the message or "two rounds" in the instructions: the
 *    rounds are asked a second time (new call ids) before the answer.
 *
 * @locality any thread (no shared state).
 */
#ifndef SIM_TOOLS_H
#define SIM_TOOLS_H

#include <cjson/cJSON.h>

/** At most this many calls per run, so a message full of city names costs
 *  a bounded amount. */
#define STOOLS_MAX_CALLS 32

/** The run's tool rounds: an array of rounds, each a non-empty array of
 *  {"name","arguments","label"} (arguments is the JSON text the model
 *  "wrote"; label names the call in the answer: the location of a weather
 *  call, else the function name).  NULL when the model answers at once
 *  (no function tool asked for) or on ENOMEM.  tools, tool_choice may be
 *  NULL; parallel is parallel_tool_calls.  Caller deletes. */
cJSON *stools_plan(const char *user_text, const char *instructions, const cJSON *tools, const cJSON *tool_choice,
                   int parallel);

/** The answer built from the submitted outputs, an array of
 *  {"label","output"} in call order: "<label>: <output>." for each, so a
 *  test can see every output was used.  Whitespace in outputs collapses
 *  to single spaces (a token is a word).  malloc'd; NULL on ENOMEM. */
char *stools_answer(const cJSON *outputs);

#endif
