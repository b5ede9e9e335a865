/* sim_retrieval.c -- extraction (poppler-glib for PDF), word chunks, BM25. */
#include "sim_retrieval.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <poppler.h>

#define BM25_K1 1.2
#define BM25_B 0.75
#define MAX_QUERY_TERMS 256

typedef struct term {
  uint64_t h;  /* FNV-1a of the lowercased term */
  uint32_t tf; /* occurrences in the chunk */
} term;

typedef struct chunk {
  size_t start, end; /* byte range in the document's text */
  uint32_t len;      /* terms in the chunk (BM25's document length) */
  uint32_t nterms;   /* distinct terms, sorted by h */
  term *terms;
} chunk;

struct sretr_doc {
  char *text;
  size_t len;
  size_t nchunks;
  chunk *chunks;
};

void sretr_doc_free(sretr_doc *d) {
  if (!d) return;
  for (size_t i = 0; i < d->nchunks; i++) free(d->chunks[i].terms);
  free(d->chunks);
  free(d->text);
  free(d);
}

size_t sretr_doc_bytes(const sretr_doc *d) { return d ? d->len : 0; }
size_t sretr_doc_chunks(const sretr_doc *d) { return d ? d->nchunks : 0; }

const char *sretr_chunk_text(const sretr_doc *d, size_t i, size_t *len) {
  *len = d->chunks[i].end - d->chunks[i].start;
  return d->text + d->chunks[i].start;
}

/* ---- extraction --------------------------------------------------------- */

/* Read the whole file (at most SRETR_MAX_TEXT bytes). */
static int read_all(const char *path, char **out, size_t *len, const char **code, char *err, size_t n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *code = "server_error";
    return aw_seterr(AW_EIO, err, n, "The file could not be read (%s).", strerror(errno));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < 0) {
    close(fd);
    *code = "server_error";
    return aw_seterr(AW_EIO, err, n, "The file could not be read.");
  }
  if ((uint64_t)st.st_size > SRETR_MAX_TEXT) {
    close(fd);
    *code = "invalid_file";
    return aw_seterr(AW_EINVAL, err, n, "The file is too large to index in the simulator (%lld bytes, at most %u).",
                     (long long)st.st_size, SRETR_MAX_TEXT);
  }
  size_t size = (size_t)st.st_size;
  char *b = malloc(size + 1);
  if (!b) {
    close(fd);
    return AW_ENOMEM;
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, b + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  b[got] = '\0';
  *out = b;
  *len = got;
  return AW_OK;
}

/* Is b well-formed UTF-8 text: no NUL, no control bytes but whitespace? */
static int is_text(const unsigned char *b, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = b[i];
    if (c < 0x80) {
      if (c == 0 || (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f') || c == 0x7f) return 0;
      i++;
      continue;
    }
    size_t k = (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 0;
    if (!k || c == 0xc0 || c == 0xc1 || c > 0xf4 || i + k >= n) return 0;
    for (size_t j = 1; j <= k; j++)
      if ((b[i + j] & 0xc0) != 0x80) return 0;
    i += k + 1;
  }
  return 1;
}

/* The text of every page of a PDF, pages separated by a blank line. */
static int pdf_text(const char *path, char **out, size_t *len, const char **code, char *err, size_t n) {
  GError *gerr = NULL;
  gchar *uri = g_filename_to_uri(path, NULL, &gerr);
  PopplerDocument *doc = uri ? poppler_document_new_from_file(uri, NULL, &gerr) : NULL;
  g_free(uri);
  if (!doc) {
    *code = "invalid_file";
    aw_seterr(AW_EINVAL, err, n, "The PDF could not be parsed (%s).", gerr && gerr->message ? gerr->message : "?");
    if (gerr) g_error_free(gerr);
    return AW_EINVAL;
  }
  GString *s = g_string_new(NULL);
  int pages = poppler_document_get_n_pages(doc), rc = AW_OK;
  for (int i = 0; i < pages && rc == AW_OK; i++) {
    PopplerPage *p = poppler_document_get_page(doc, i);
    if (!p) continue;
    char *t = poppler_page_get_text(p);
    if (t) {
      if (s->len) g_string_append(s, "\n\n");
      g_string_append(s, t);
      g_free(t);
    }
    g_object_unref(p);
    if (s->len > SRETR_MAX_TEXT) {
      *code = "invalid_file";
      rc = aw_seterr(AW_EINVAL, err, n, "The PDF's text is too large to index in the simulator (more than %u bytes).",
                     SRETR_MAX_TEXT);
    }
  }
  g_object_unref(doc);
  if (rc == AW_OK) {
    *out = malloc(s->len + 1);
    if (!*out) rc = AW_ENOMEM;
    else {
      memcpy(*out, s->str, s->len + 1);
      *len = s->len;
    }
  }
  g_string_free(s, TRUE);
  return rc;
}

static int extract(const char *path, char **text, size_t *len, const char **code, char *err, size_t n) {
  char *raw = NULL;
  size_t rlen = 0;
  int rc = read_all(path, &raw, &rlen, code, err, n);
  if (rc != AW_OK) return rc;
  if (rlen >= 5 && memcmp(raw, "%PDF-", 5) == 0) {
    free(raw); /* poppler maps the file itself */
    return pdf_text(path, text, len, code, err, n);
  }
  if (!is_text((const unsigned char *)raw, rlen)) {
    free(raw);
    *code = "unsupported_file";
    return aw_seterr(AW_EINVAL, err, n, "The file type is not supported: no text could be extracted from it.");
  }
  *text = raw;
  *len = rlen;
  return AW_OK;
}

/* ---- terms -------------------------------------------------------------- */

static int is_space(unsigned char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v'; }
/* ASCII letters and digits, and every byte of a multi-byte character. */
static int is_term_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

/* Next term of s[*pos..end): its hash, or 0 when there is none left. */
static int next_term(const char *s, size_t end, size_t *pos, uint64_t *h) {
  size_t i = *pos;
  while (i < end && !is_term_byte((unsigned char)s[i])) i++;
  if (i >= end) {
    *pos = end;
    return 0;
  }
  uint64_t x = 1469598103934665603ull;
  while (i < end && is_term_byte((unsigned char)s[i])) {
    unsigned char c = (unsigned char)s[i++];
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
    x = (x ^ c) * 1099511628211ull;
  }
  *pos = i;
  *h = x;
  return 1;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Count the terms of text[start,end) into c. */
static int chunk_terms(const char *text, chunk *c, uint64_t **scratch, size_t *scap) {
  size_t n = 0, pos = c->start;
  uint64_t h;
  while (next_term(text, c->end, &pos, &h)) {
    if (n == *scap) {
      size_t nc = *scap ? *scap * 2 : 1024;
      uint64_t *v = realloc(*scratch, nc * sizeof *v);
      if (!v) return AW_ENOMEM;
      *scratch = v;
      *scap = nc;
    }
    (*scratch)[n++] = h;
  }
  qsort(*scratch, n, sizeof **scratch, cmp_u64);
  size_t distinct = 0;
  for (size_t i = 0; i < n; i++)
    if (i == 0 || (*scratch)[i] != (*scratch)[i - 1]) distinct++;
  c->len = (uint32_t)n;
  c->terms = distinct ? malloc(distinct * sizeof *c->terms) : NULL;
  if (distinct && !c->terms) return AW_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (i == 0 || (*scratch)[i] != (*scratch)[i - 1]) c->terms[k++] = (term){(*scratch)[i], 0};
    c->terms[k - 1].tf++;
  }
  c->nterms = (uint32_t)distinct;
  return AW_OK;
}

/* ---- chunking ----------------------------------------------------------- */

static int build(sretr_doc *d, unsigned max_words, unsigned overlap) {
  /* Word starts (4 bytes a word: the text is at most 8 MiB). */
  size_t nw = 0, cap = 0;
  uint32_t *ws = NULL;
  for (size_t i = 0; i < d->len;) {
    while (i < d->len && is_space((unsigned char)d->text[i])) i++;
    if (i >= d->len) break;
    if (nw == cap) {
      size_t nc = cap ? cap * 2 : 4096;
      uint32_t *v = realloc(ws, nc * sizeof *v);
      if (!v) {
        free(ws);
        return AW_ENOMEM;
      }
      ws = v;
      cap = nc;
    }
    ws[nw++] = (uint32_t)i;
    while (i < d->len && !is_space((unsigned char)d->text[i])) i++;
  }
  if (nw == 0) {
    free(ws);
    return AW_OK;
  }
  size_t step = max_words - overlap;
  size_t n = nw <= max_words ? 1 : 1 + (nw - max_words + step - 1) / step;
  d->chunks = calloc(n, sizeof *d->chunks);
  if (!d->chunks) {
    free(ws);
    return AW_ENOMEM;
  }
  uint64_t *scratch = NULL;
  size_t scap = 0;
  int rc = AW_OK;
  for (size_t k = 0; k < n && rc == AW_OK; k++) {
    size_t first = k * step, last = first + max_words < nw ? first + max_words - 1 : nw - 1;
    chunk *c = &d->chunks[k];
    c->start = ws[first];
    size_t e = ws[last];
    while (e < d->len && !is_space((unsigned char)d->text[e])) e++;
    c->end = e;
    d->nchunks = k + 1;
    rc = chunk_terms(d->text, c, &scratch, &scap);
  }
  free(scratch);
  free(ws);
  return rc;
}

int sretr_index_file(const char *path, unsigned max_chunk_tokens, unsigned overlap_tokens, sretr_doc **out,
                     const char **code, char *err, size_t n) {
  *out = NULL;
  *code = "server_error";
  if (max_chunk_tokens == 0 || overlap_tokens >= max_chunk_tokens)
    return aw_seterr(AW_EINVAL, err, n, "bad chunking strategy");
  sretr_doc *d = calloc(1, sizeof *d);
  if (!d) return AW_ENOMEM;
  int rc = extract(path, &d->text, &d->len, code, err, n);
  if (rc == AW_OK) rc = build(d, max_chunk_tokens, overlap_tokens);
  if (rc == AW_OK && d->nchunks == 0) {
    *code = "invalid_file";
    rc = aw_seterr(AW_EINVAL, err, n, "The file contains no text.");
  }
  if (rc == AW_ENOMEM) aw_seterr(rc, err, n, "out of memory while indexing the file");
  if (rc != AW_OK) {
    sretr_doc_free(d);
    return rc;
  }
  *out = d;
  return AW_OK;
}

/* ---- ranking ------------------------------------------------------------ */

/* tf of h in c (binary search), 0 when absent. */
static uint32_t tf_of(const chunk *c, uint64_t h) {
  size_t lo = 0, hi = c->nterms;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (c->terms[mid].h < h) lo = mid + 1;
    else hi = mid;
  }
  return lo < c->nterms && c->terms[lo].h == h ? c->terms[lo].tf : 0;
}

/* Better first: higher score, then earlier document, then earlier chunk. */
static int hit_better(const sretr_hit *a, const sretr_hit *b) {
  if (a->score != b->score) return a->score > b->score;
  if (a->doc != b->doc) return a->doc < b->doc;
  return a->chunk < b->chunk;
}

int sretr_search(const sretr_doc *const *docs, size_t ndocs, const char *const *queries, size_t nq, size_t max_hits,
                 double threshold, sretr_hit *out, size_t *nout) {
  *nout = 0;
  /* The distinct terms of every query string. */
  uint64_t q[MAX_QUERY_TERMS];
  size_t nt = 0;
  for (size_t i = 0; i < nq; i++) {
    size_t pos = 0, end = strlen(queries[i]);
    uint64_t h;
    while (nt < MAX_QUERY_TERMS && next_term(queries[i], end, &pos, &h)) {
      size_t j = 0;
      while (j < nt && q[j] != h) j++;
      if (j == nt) q[nt++] = h;
    }
  }
  size_t total = 0;
  double len_sum = 0;
  for (size_t d = 0; d < ndocs; d++) {
    if (!docs[d]) continue;
    total += docs[d]->nchunks;
    for (size_t c = 0; c < docs[d]->nchunks; c++) len_sum += docs[d]->chunks[c].len;
  }
  if (!nt || !total || !max_hits) return AW_OK;
  double avgdl = len_sum / (double)total, idf[MAX_QUERY_TERMS], best = 0;
  for (size_t t = 0; t < nt; t++) {
    size_t df = 0;
    for (size_t d = 0; d < ndocs; d++)
      for (size_t c = 0; docs[d] && c < docs[d]->nchunks; c++) df += tf_of(&docs[d]->chunks[c], q[t]) > 0;
    idf[t] = log(1.0 + ((double)total - (double)df + 0.5) / ((double)df + 0.5));
    best += idf[t] * (BM25_K1 + 1.0);
  }
  if (best <= 0) return AW_OK;
  /* Keep the best max_hits in out, sorted (insertion: max_hits <= 50). */
  for (size_t d = 0; d < ndocs; d++) {
    for (size_t c = 0; docs[d] && c < docs[d]->nchunks; c++) {
      const chunk *ch = &docs[d]->chunks[c];
      double s = 0, norm = BM25_K1 * (1.0 - BM25_B + BM25_B * (avgdl > 0 ? ch->len / avgdl : 1.0));
      for (size_t t = 0; t < nt; t++) {
        uint32_t tf = tf_of(ch, q[t]);
        if (tf) s += idf[t] * (tf * (BM25_K1 + 1.0)) / (tf + norm);
      }
      s /= best;
      if (s <= 0 || s < threshold) continue;
      sretr_hit h = {d, c, s > 1.0 ? 1.0 : s};
      size_t at = *nout;
      while (at > 0 && hit_better(&h, &out[at - 1])) at--;
      if (at >= max_hits) continue;
      size_t last = *nout < max_hits ? *nout : max_hits - 1;
      memmove(&out[at + 1], &out[at], (last - at) * sizeof *out);
      out[at] = h;
      if (*nout < max_hits) (*nout)++;
    }
  }
  return AW_OK;
}
