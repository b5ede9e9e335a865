/* sim_fsearch.c -- a question answered from vector stores: search, quote, citation. */
#include "sim_fsearch.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sim_model.h"
#include "sim_vector_stores.h"

#define MAX_TERMS 64
#define TERM_MAX 48
#define MIN_QUOTE_WORDS 6

static const char *const question_words[] = {"how", "what", "why", "where", "when", "who", "which", "can", "could",
                                             "do", "does", "did", "is", "are", "should", "may", "will", "would", NULL};

/* Words too common to tell one sentence from another. */
static const char *const stop_words[] = {
    "a", "an", "the", "i", "my", "me", "you", "your", "we", "our", "it", "its", "is", "are", "was", "be", "do",
    "does", "did", "how", "what", "why", "where", "when", "who", "which", "can", "could", "should", "would", "will",
    "to", "of", "in", "on", "for", "and", "or", "at", "by", "with", "from", "this", "that", "there", "if", "so",
    "about", "as", "into", "get", "may", NULL};

static int in_list(const char *w, const char *const *list) {
  for (; *list; list++)
    if (!strcmp(w, *list)) return 1;
  return 0;
}

/* The next term of s from *pos: a run of ASCII letters and digits (other
 * bytes of UTF-8 kept in it), lowercased into t.  0 at the end. */
static int next_term(const char *s, size_t n, size_t *pos, char t[TERM_MAX]) {
  size_t i = *pos;
  while (i < n && !(isalnum((unsigned char)s[i]) || (unsigned char)s[i] >= 0x80)) i++;
  if (i >= n) {
    *pos = n;
    return 0;
  }
  size_t k = 0;
  for (; i < n && (isalnum((unsigned char)s[i]) || (unsigned char)s[i] >= 0x80); i++)
    if (k + 1 < TERM_MAX) t[k++] = (char)tolower((unsigned char)s[i]);
  t[k] = '\0';
  *pos = i;
  return 1;
}

int sfs_is_question(const char *text) {
  if (!text) return 0;
  if (strchr(text, '?')) return 1;
  char t[TERM_MAX];
  size_t pos = 0;
  return next_term(text, strlen(text), &pos, t) && in_list(t, question_words);
}

long sfs_chars(const char *s, size_t n) {
  long c = 0;
  for (size_t i = 0; i < n && s[i]; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
  return c;
}

/* The question's content words, distinct. */
static size_t content_terms(const char *q, char terms[MAX_TERMS][TERM_MAX]) {
  size_t n = 0, pos = 0, len = strlen(q);
  char t[TERM_MAX];
  while (n < MAX_TERMS && next_term(q, len, &pos, t)) {
    if (in_list(t, stop_words)) continue;
    int dup = 0;
    for (size_t i = 0; i < n && !dup; i++) dup = !strcmp(terms[i], t);
    if (!dup) memcpy(terms[n++], t, TERM_MAX);
  }
  return n;
}

/* How many of terms[0..nt) the bytes s[0..n) hold. */
static int shared(const char *s, size_t n, char terms[MAX_TERMS][TERM_MAX], size_t nt) {
  int seen[MAX_TERMS] = {0}, count = 0;
  size_t pos = 0;
  char t[TERM_MAX];
  while (next_term(s, n, &pos, t))
    for (size_t i = 0; i < nt; i++)
      if (!seen[i] && !strcmp(terms[i], t)) seen[i] = 1, count++;
  return count;
}

/* The end of the sentence starting at s[i]: after [.!?] followed by
 * whitespace, or at a line break that starts a new Markdown block (a blank
 * line, a heading, a list item, a quote, a table row) or ends a heading. */
static size_t sentence_end(const char *s, size_t n, size_t i) {
  int heading = s[i] == '#';
  for (; i < n; i++) {
    char c = s[i];
    if ((c == '.' || c == '!' || c == '?') && (i + 1 == n || isspace((unsigned char)s[i + 1]))) return i + 1;
    if (c == '\n') {
      if (heading) return i;
      size_t j = i + 1;
      while (j < n && (s[j] == ' ' || s[j] == '\t')) j++;
      if (j >= n || strchr("\n#-*>|", s[j]) || (isdigit((unsigned char)s[j]) && j + 1 < n && s[j + 1] == '.'))
        return i;
    }
  }
  return n;
}

/* Append s[0..n) to out without Markdown markers, whitespace collapsed. */
static int append_clean(buf *out, const char *s, size_t n) {
  size_t i = 0;
  /* Leading block markers: "# ", "- ", "* ", "> ", "1. ". */
  for (;;) {
    while (i < n && isspace((unsigned char)s[i])) i++;
    size_t j = i;
    while (j < n && isdigit((unsigned char)s[j])) j++;
    if (j > i && j < n && s[j] == '.') i = j + 1;
    else if (i < n && strchr("#-*>", s[i])) {
      while (i < n && strchr("#-*>", s[i])) i++;
    } else break;
  }
  int space = out->len > 0;
  for (; i < n; i++) {
    char c = s[i];
    if (c == '*' || c == '`' || c == '_') continue;
    if (isspace((unsigned char)c)) {
      space = out->len > 0;
      continue;
    }
    if (space && buf_append(out, " ", 1) != AW_OK) return AW_ENOMEM;
    space = 0;
    if (buf_append(out, &c, 1) != AW_OK) return AW_ENOMEM;
  }
  return AW_OK;
}

/* The quote: the sentence of chunk sharing the most of terms (a body
 * sentence before a heading, then the earliest on a tie), with the next
 * one when it is short; "" when no sentence shares any.  NULL on ENOMEM. */
static char *quote(const char *chunk, char terms[MAX_TERMS][TERM_MAX], size_t nt) {
  size_t n = strlen(chunk), best = 0, best_end = 0;
  int best_score = -1;
  for (size_t i = 0; i < n;) {
    while (i < n && isspace((unsigned char)chunk[i])) i++;
    if (i >= n) break;
    size_t e = sentence_end(chunk, n, i);
    /* A heading names the topic; the sentence under it that shares as
     * many words says something about it: it wins the tie. */
    int sc = 2 * shared(chunk + i, e - i, terms, nt) - (chunk[i] == '#');
    if (sc > best_score) best_score = sc, best = i, best_end = e;
    i = e > i ? e : i + 1;
  }
  if (best_score <= 0) return strdup("");
  buf out;
  buf_init(&out, 1 << 20);
  int rc = append_clean(&out, chunk + best, best_end - best);
  if (!rc && out.data && smodel_count_tokens(out.data) < MIN_QUOTE_WORDS) {
    size_t i = best_end;
    while (i < n && isspace((unsigned char)chunk[i])) i++;
    if (i < n) rc = append_clean(&out, chunk + i, sentence_end(chunk, n, i) - i);
  }
  char *q = !rc && out.data ? strdup(out.data) : rc ? NULL : strdup("");
  buf_free(&out);
  return q;
}

void sfs_answer_free(sfs_answer *a) {
  if (!a) return;
  free(a->query);
  cJSON_Delete(a->results);
  free(a->text);
  free(a->file_id);
  free(a->filename);
  free(a);
}

static int quote_best(sfs_answer *a, sfs_answer **out);

int sfs_answer_question(const cJSON *ids, const char *question, int max_results, sfs_answer **out) {
  *out = NULL;
  if (!cJSON_GetArraySize(ids) || !sfs_is_question(question)) return AW_OK;
  /* The question as asked, trimmed: the real service rewrites it, which a
   * deterministic stand-in has no reason to imitate. */
  while (isspace((unsigned char)*question)) question++;
  size_t ql = strlen(question);
  while (ql && isspace((unsigned char)question[ql - 1])) ql--;
  sfs_answer *a = calloc(1, sizeof *a);
  if (!a || !(a->query = strndup(question, ql))) {
    free(a);
    return AW_ENOMEM;
  }
  a->results = svs_file_search(ids, a->query, max_results < 1 ? 1 : (size_t)max_results);
  if (!a->results) {
    sfs_answer_free(a);
    return AW_ENOMEM;
  }
  return quote_best(a, out);
}

int sfs_answer_from_results(const char *question, cJSON *results, sfs_answer **out) {
  *out = NULL;
  sfs_answer *a = calloc(1, sizeof *a);
  if (!a || !(a->query = strdup(question))) {
    free(a);
    cJSON_Delete(results);
    return AW_ENOMEM;
  }
  a->results = results;
  return quote_best(a, out);
}

/* The answer a (query and results set; taken) completed with the quote of
 * its best result and the citation, into *out; freed when nothing answers. */
static int quote_best(sfs_answer *a, sfs_answer **out) {
  const cJSON *top = cJSON_GetArrayItem(a->results, 0);
  if (!top) {
    sfs_answer_free(a);
    return AW_OK; /* nothing found: answered as without the tool */
  }
  char terms[MAX_TERMS][TERM_MAX];
  size_t nt = content_terms(a->query, terms);
  a->text = quote(cJSON_GetObjectItemCaseSensitive(top, "text")->valuestring, terms, nt);
  a->file_id = strdup(cJSON_GetObjectItemCaseSensitive(top, "file_id")->valuestring);
  a->filename = strdup(cJSON_GetObjectItemCaseSensitive(top, "filename")->valuestring);
  if (!a->text || !a->file_id || !a->filename) {
    sfs_answer_free(a);
    return AW_ENOMEM;
  }
  if (!a->text[0]) {
    /* The chunk matched on common words only ("the", "what"...): nothing
     * in it answers the question. */
    sfs_answer_free(a);
    return AW_OK;
  }
  a->tokens = smodel_count_tokens(a->text);
  *out = a;
  return AW_OK;
}

int sfs_collect_stores(const cJSON *const *objs, size_t n, cJSON *out) {
  for (size_t i = 0; i < n; i++) {
    const cJSON *tr = objs[i] ? cJSON_GetObjectItemCaseSensitive(objs[i], "tool_resources") : NULL;
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tr, "file_search"),
                                                        "vector_store_ids");
    const cJSON *id;
    cJSON_ArrayForEach(id, ids) {
      if (!cJSON_IsString(id)) continue;
      int have = 0;
      const cJSON *o;
      cJSON_ArrayForEach(o, out) have |= !strcmp(o->valuestring, id->valuestring);
      if (!have && !cJSON_AddItemToArray(out, cJSON_CreateString(id->valuestring))) return AW_ENOMEM;
    }
  }
  return AW_OK;
}
