/* sim_retrieval.h -- text extraction, chunking and BM25 ranking behind the
 * simulator's vector stores (prefix sretr_).
 *
 * Why a real index: the worker's file_search path (issue 10) has to be
 * tested against answers that depend on what the documents say, so a
 * vector store's search must rank the file that answers a question first,
 * as the real service does, and must do it the same way every run.  Real
 * embeddings would need a model; BM25 over word chunks needs none, is
 * deterministic and ranks a question's document first as long as it
 * shares the question's words.
 *
 * - Extraction: a PDF (by its "%PDF-" magic) through poppler-glib, page by
 *   page; anything else must be UTF-8 text without NUL bytes (plain text,
 *   Markdown, JSON, code...) and is taken as it is.  A binary file fails
 *   with code "unsupported_file", an empty or unreadable one with
 *   "invalid_file", as the API's vector store file last_error does.
 * - Chunking: the API's static strategy with tokens approximated as
 *   whitespace-separated words: chunks of max_chunk_tokens words, each
 *   starting max_chunk_tokens - overlap_tokens words after the previous
 *   (the default, 800 and 400, is the API's "auto").  A chunk's text is the
 *   document's own bytes from its first word to its last.
 * - Ranking: Okapi BM25 (k1 1.2, b 0.75, the idf of Lucene, never
 *   negative) over every chunk of the documents searched, on lowercased
 *   alphanumeric terms.  The score is normalised into [0,1] (the spec's
 *   range) by dividing by the largest score the query could reach (each
 *   term's idf x (k1 + 1)); ties go to the earlier document and chunk.
 *
 * Costs: extraction reads the file once; a document keeps its text (at
 * most SRETR_MAX_TEXT bytes, larger ones fail with invalid_file) and, per
 * chunk, its sorted (term hash, count) pairs: about 12 bytes per word and
 * chunk, so twice the text's words with the default overlap.  A search is
 * O(chunks x query terms x log(chunk terms)): fine for the documents of a
 * test, not meant for millions of chunks.
 *
 * @locality any thread; a document is immutable once built, so searches
 * may share it (the caller keeps it alive while they run).
 */
#ifndef SIM_RETRIEVAL_H
#define SIM_RETRIEVAL_H

#include <stddef.h>
#include "aw_error.h"

/** The most text a document may hold once extracted (8 MiB). */
#define SRETR_MAX_TEXT (8u << 20)

typedef struct sretr_doc sretr_doc;

/** Build the index of the file at path: extract, chunk, count terms.
 *  On failure *code gets the API's last_error code ("unsupported_file",
 *  "invalid_file" or "server_error") and errstr the message.  AW_EINVAL
 *  for a file whose text cannot be had, AW_EIO when it cannot be read,
 *  AW_ENOMEM. */
int sretr_index_file(const char *path, unsigned max_chunk_tokens, unsigned overlap_tokens, sretr_doc **out,
                     const char **code, char *errstr, size_t errstr_size) AW_MUST_CHECK;
/** Free a document (NULL is fine). */
void sretr_doc_free(sretr_doc *d);
/** Bytes of text the document holds (the vector store file's usage_bytes). */
size_t sretr_doc_bytes(const sretr_doc *d);
/** Number of chunks. */
size_t sretr_doc_chunks(const sretr_doc *d);
/** The text of chunk i (not NUL-terminated: *len bytes). */
const char *sretr_chunk_text(const sretr_doc *d, size_t i, size_t *len);

/** One ranked chunk: docs[doc], chunk, score in (0,1]. */
typedef struct sretr_hit {
  size_t doc, chunk;
  double score;
} sretr_hit;

/** Rank every chunk of docs[0..ndocs) (NULL entries are skipped) for the
 *  words of queries[0..nq) and write the best max_hits with a score above
 *  zero and at least threshold to out, best first; *nout gets how many.
 *  AW_ENOMEM. */
int sretr_search(const sretr_doc *const *docs, size_t ndocs, const char *const *queries, size_t nq,
                 size_t max_hits, double threshold, sretr_hit *out, size_t *nout) AW_MUST_CHECK;

#endif
