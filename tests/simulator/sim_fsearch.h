/* sim_fsearch.h -- the scripted model's file search: a question answered
 * from vector stores, with the quote and the citation (prefix sfs_).
 *
 * Why it exists: the worker carries citations from the API to the caller
 * (issue 10), and that path can only be tested against answers that cite
 * what the documents say.  Both APIs ask the same of the model -- the
 * Responses API through a file_search tool naming vector stores, the
 * Assistants API through the file_search tool and the stores of the
 * assistant's and the thread's tool_resources -- so it is decided here
 * once, and each API only dresses it in its own shapes (sim_responses.c: a
 * file_search_call item and file_citation annotations; sim_run.c: a
 * tool_calls step and a 【n:m†source】 marker annotated in the text).
 *
 * The rule, deterministic (no clock, no randomness):
 *  - only a question searches: a message with a '?' or one opening with a
 *    question word (how, what, why, can, ...).  Anything else, or no store,
 *    or no sentence of the best chunk sharing a content word (not "the",
 *    "how", "my"...) with the question: no search result, and the caller
 *    answers as without the tool;
 *  - the query is the question as asked, searched over every completed
 *    file of the stores as one BM25 index (svs_file_search);
 *  - the answer quotes the best chunk's sentence sharing the most of the
 *    question's content words (the earliest on a tie; the next sentence is
 *    added when that one is shorter than 6 words), Markdown markers
 *    (#, -, *, >, `) dropped and whitespace collapsed to single spaces (a
 *    token is a word: the answer streams word by word);
 *  - the citation names the best chunk's file.
 *
 * Costs: one search (O(chunks x query terms)) and one pass over the best
 * chunk; the results keep each chunk's text (at most max_results chunks).
 *
 * @locality any thread; sfs_answer_question takes the vector stores' lock
 * (sim_vector_stores.h: callable with the store lock held).
 */
#ifndef SIM_FSEARCH_H
#define SIM_FSEARCH_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "aw_error.h"

typedef struct sfs_answer {
  char *query;      /* the question searched */
  cJSON *results;   /* [{file_id, filename, score, attributes, text}], best first */
  char *text;       /* the answer: the quote, single-spaced */
  int tokens;       /* words of text */
  char *file_id;    /* the cited file (the best result's) */
  char *filename;
} sfs_answer;

/** Is text a question (a '?' in it, or a question word first)? */
int sfs_is_question(const char *text);

/** Search the vector stores ids (a JSON array of ids; NULL or empty: none)
 *  for question, keeping max_results (1..50) results.  *out gets the
 *  answer (sfs_answer_free), or NULL when no search applies: not a
 *  question, no store, nothing found.  AW_ENOMEM. */
int sfs_answer_question(const cJSON *ids, const char *question, int max_results, sfs_answer **out) AW_MUST_CHECK;

/** The answer to question from results ranked elsewhere (a JSON array
 *  [{file_id, filename, score, attributes, text}], best first; taken): the
 *  same quote and citation as sfs_answer_question.  Used for the files a
 *  Responses input names (input_file), which are in no vector store.
 *  *out is NULL when nothing answers.  AW_ENOMEM. */
int sfs_answer_from_results(const char *question, cJSON *results, sfs_answer **out) AW_MUST_CHECK;

/** Free an answer (NULL is fine). */
void sfs_answer_free(sfs_answer *a);

/** Characters (UTF-8 code points) in the first n bytes of s: the APIs'
 *  annotation indices count characters, not bytes. */
long sfs_chars(const char *s, size_t n);

/** The stores of a file_search tool resource: the vector_store_ids of
 *  tool_resources.file_search of each of objs[0..n) (assistant, thread...;
 *  NULL entries skipped) appended to out (a JSON array, repeats skipped).
 *  AW_ENOMEM. */
int sfs_collect_stores(const cJSON *const *objs, size_t n, cJSON *out) AW_MUST_CHECK;

#endif
