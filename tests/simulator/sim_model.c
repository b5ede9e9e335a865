/* sim_model.c -- deterministic scripted answers. */
#include "sim_model.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORDS 64 /* words taken from any one input; keeps work bounded */
#define WORD_MAX 48

typedef struct words {
  char w[MAX_WORDS][WORD_MAX];
  int n;
} words;

static const char *const stop[] = {
    "a", "an", "the", "i", "me", "my", "you", "your", "we", "our", "is", "are", "was", "be",
    "do", "does", "did", "how", "what", "why", "when", "where", "which", "who", "can", "could",
    "should", "would", "will", "to", "of", "in", "on", "for", "and", "or", "with", "it", "this",
    "that", "please", "hi", "hello", "there", "about", "from", "at", "by", "as", "if", "so",
    "based", "any", "some", "also", "just", "need", "want", "get", "tell", "still", "not", "doesn't",
    "don't", "can't", "i'm", "it's", NULL};

static int is_stop(const char *w) {
  for (int i = 0; stop[i]; i++)
    if (strcmp(stop[i], w) == 0) return 1;
  return 0;
}

int smodel_count_tokens(const char *s) {
  int n = 0, in = 0;
  for (; s && *s; s++) {
    if (isspace((unsigned char)*s)) in = 0;
    else if (!in) in = 1, n++;
  }
  return n;
}

/* Split into raw words (punctuation kept), at most MAX_WORDS. */
static void split_raw(const char *s, words *out) {
  out->n = 0;
  while (s && *s && out->n < MAX_WORDS) {
    while (isspace((unsigned char)*s)) s++;
    if (!*s) break;
    size_t k = 0;
    while (*s && !isspace((unsigned char)*s)) {
      if (k < WORD_MAX - 1) out->w[out->n][k++] = *s;
      s++;
    }
    out->w[out->n++][k] = '\0';
  }
}

/* Lower-cased alphanumeric keywords, stop words removed, de-duplicated. */
static void keywords(const char *s, words *out) {
  words raw;
  split_raw(s, &raw);
  out->n = 0;
  for (int i = 0; i < raw.n; i++) {
    char k[WORD_MAX];
    size_t n = 0;
    for (const char *p = raw.w[i]; *p; p++)
      if (isalnum((unsigned char)*p) || *p == '-' || (*p & 0x80)) k[n++] = (char)tolower((unsigned char)*p);
    k[n] = '\0';
    if (n < 2 || is_stop(k)) continue;
    int dup = 0;
    for (int j = 0; j < out->n; j++) dup |= strcmp(out->w[j], k) == 0;
    if (!dup) memcpy(out->w[out->n++], k, n + 1);
  }
}

/* Strip trailing punctuation so the word can be reused mid-sentence. */
static void bare(char *w) {
  size_t n = strlen(w);
  while (n && ispunct((unsigned char)w[n - 1])) w[--n] = '\0';
}

/* The opening clause: "To <rest>," for how-to questions (my -> your), else
 * "About <keywords>,".  Appends to out (word list). */
static void opening(const char *user, words *out) {
  words raw;
  split_raw(user, &raw);
  int start = -1;
  for (int i = 0; i + 2 < raw.n && start < 0; i++) {
    char a[WORD_MAX], b[WORD_MAX];
    snprintf(a, sizeof a, "%s", raw.w[i]);
    snprintf(b, sizeof b, "%s", raw.w[i + 1]);
    for (char *p = a; *p; p++) *p = (char)tolower((unsigned char)*p);
    for (char *p = b; *p; p++) *p = (char)tolower((unsigned char)*p);
    if (strcmp(a, "how") == 0 && (strcmp(b, "do") == 0 || strcmp(b, "can") == 0 || strcmp(b, "should") == 0) &&
        i + 3 < raw.n)
      start = i + 3; /* how do I <verb...> */
    else if (strcmp(a, "how") == 0 && strcmp(b, "to") == 0)
      start = i + 2;
  }
  out->n = 0;
  if (start >= 0 && start < raw.n) {
    snprintf(out->w[out->n++], WORD_MAX, "To");
    for (int i = start; i < raw.n && out->n < 10; i++) {
      char w[WORD_MAX];
      snprintf(w, sizeof w, "%s", raw.w[i]);
      bare(w);
      if (!w[0]) continue;
      if (strcasecmp(w, "my") == 0) snprintf(w, sizeof w, "your");
      else if (strcasecmp(w, "i") == 0) snprintf(w, sizeof w, "you");
      else if (strcasecmp(w, "me") == 0) snprintf(w, sizeof w, "you");
      snprintf(out->w[out->n++], WORD_MAX, "%s", w);
    }
    size_t l = strlen(out->w[out->n - 1]);
    if (l + 1 < WORD_MAX) strcat(out->w[out->n - 1], ",");
    return;
  }
  words kw;
  keywords(user, &kw);
  snprintf(out->w[out->n++], WORD_MAX, kw.n ? "About" : "Thanks");
  if (!kw.n) {
    snprintf(out->w[out->n++], WORD_MAX, "for");
    snprintf(out->w[out->n++], WORD_MAX, "your");
    snprintf(out->w[out->n++], WORD_MAX, "message,");
    return;
  }
  for (int i = 0; i < kw.n && i < 4; i++) {
    snprintf(out->w[out->n++], WORD_MAX, "%s%s", kw.w[i], (i + 1 == kw.n || i == 3) ? "," : "");
  }
}

/* Append one word (space-separated) to out; cap is sized for every word. */
static void emit(char *out, size_t cap, size_t *len, int *emitted, const char *w) {
  int n = snprintf(out + *len, cap - *len, "%s%s", *emitted ? " " : "", w);
  if (n > 0) *len += (size_t)n < cap - *len ? (size_t)n : cap - *len - 1;
  (*emitted)++;
}

char *smodel_answer(const char *user, const char *instr, const char *addl, int n_tokens) {
  if (n_tokens < 1) n_tokens = 1;
  words open, kw, tag, add;
  opening(user, &open);
  keywords(user, &kw);
  /* Tag: the instructions verbatim (first 10 words), then additional ones. */
  split_raw(instr, &tag);
  if (tag.n > 10) tag.n = 10;
  split_raw(addl, &add);
  if (add.n > 6) add.n = 6;
  int ntag = tag.n ? tag.n + 1 : 0, nadd = add.n ? add.n + 1 : 0;
  /* Keep room for at least the opening; shed the tags when short of words. */
  if (open.n + ntag + nadd > n_tokens) nadd = 0;
  if (open.n + ntag > n_tokens) ntag = 0;
  int body = n_tokens - ntag - nadd;

  /* Filler sentences echo the keywords; chosen by position only. */
  static const char *const tmpl[] = {"open the %s settings page,", "check the %s options carefully,",
                                     "follow the %s guide step by step,", "confirm the %s change,",
                                     "and contact support if the %s problem persists."};
  size_t cap = (size_t)n_tokens * (WORD_MAX + 2) + 64;
  char *out = malloc(cap);
  if (!out) return NULL;
  size_t len = 0;
  int emitted = 0;
#define EMIT(word) emit(out, cap, &len, &emitted, (word))
  for (int i = 0; i < open.n && emitted < body; i++) EMIT(open.w[i]);
  for (int s = 0; emitted < body; s++) {
    char sentence[160];
    const char *k = kw.n ? kw.w[s % kw.n] : "account";
    snprintf(sentence, sizeof sentence, tmpl[s % 5], k);
    words sw;
    split_raw(sentence, &sw);
    for (int i = 0; i < sw.n && emitted < body; i++) EMIT(sw.w[i]);
  }
  /* End the body with a full stop so the tag reads as a separate note. */
  if (len && (out[len - 1] == ',')) out[len - 1] = '.';
  else if (len && isalnum((unsigned char)out[len - 1]) && len + 1 < cap) out[len++] = '.', out[len] = '\0';
  if (ntag) {
    EMIT("(instructions:");
    for (int i = 0; i < tag.n; i++) {
      if (i + 1 == tag.n) {
        char last[WORD_MAX + 2];
        snprintf(last, sizeof last, "%s)", tag.w[i]);
        EMIT(last);
      } else {
        EMIT(tag.w[i]);
      }
    }
  }
  if (nadd) {
    EMIT("(additional:");
    for (int i = 0; i < add.n; i++) {
      if (i + 1 == add.n) {
        char last[WORD_MAX + 2];
        snprintf(last, sizeof last, "%s)", add.w[i]);
        EMIT(last);
      } else {
        EMIT(add.w[i]);
      }
    }
  }
#undef EMIT
  return out;
}
