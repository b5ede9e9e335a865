/* sim_codeint.c -- the scripted model's code interpreter: the data, a bar
 * chart as a PNG or a summary as a CSV, the code and its logs.
 *
 * Why a hand-made PNG: the simulator must hand the worker a real image
 * (the worker only moves bytes, but tests open them), deterministically and
 * without a plotting stack.  An RGB bitmap of 160x100 costs 48 KB before
 * deflate; zlib (compress2, level 9, and crc32) makes the file, so the
 * same data always give the same bytes.  Nothing here holds a lock or a
 * clock: every function is pure.
 *
 * Costs: O(input bytes) to read the numbers (at most MAX_VALUES kept), one
 * deflate of 48 KB for a chart, at most LARGE_CSV_BYTES for a "large" CSV.
 */
#include "sim_codeint.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define MAX_VALUES 64
#define PNG_W 160
#define PNG_H 100
#define MARGIN 10
#define LARGE_CSV_BYTES (300 * 1024)
#define NUM_MAX 48

static const char *const chart_words[] = {"chart", "plot", "graph", NULL};
static const char *const data_words[] = {"csv", "table", NULL};

/* Does text hold one of words at the start of a word (case-insensitive)? */
static int has_word(const char *text, const char *const *words) {
  if (!text) return 0;
  for (const char *p = text; *p; p++) {
    if (p > text && isalnum((unsigned char)p[-1])) continue;
    for (const char *const *w = words; *w; w++)
      if (!strncasecmp(p, *w, strlen(*w))) return 1;
  }
  return 0;
}

int sci_wants_tool(const char *text) { return has_word(text, chart_words) || has_word(text, data_words); }

/* A number filling the whole field s[0..n) (spaces and quotes trimmed)? */
static int field_number(const char *s, size_t n, double *v) {
  while (n && (isspace((unsigned char)*s) || *s == '"')) s++, n--;
  while (n && (isspace((unsigned char)s[n - 1]) || s[n - 1] == '"')) n--;
  if (!n || n >= NUM_MAX) return 0;
  char tmp[NUM_MAX];
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  char *end = NULL;
  double d = strtod(tmp, &end);
  if (end != tmp + n || !isfinite(d)) return 0;
  *v = d;
  return 1;
}

/* The last numeric field of each line of a CSV (fields split by , ; or tab). */
static size_t file_values(const char *data, size_t len, double *vals, size_t nvals, size_t max) {
  size_t i = 0;
  while (i < len && nvals < max) {
    size_t eol = i;
    while (eol < len && data[eol] != '\n') eol++;
    double last = 0;
    int found = 0;
    for (size_t f = i; f <= eol;) {
      size_t e = f;
      while (e < eol && data[e] != ',' && data[e] != ';' && data[e] != '\t') e++;
      double v;
      if (field_number(data + f, e - f, &v)) last = v, found = 1;
      f = e + 1;
    }
    if (found) vals[nvals++] = last;
    i = eol + 1;
  }
  return nvals;
}

/* The numbers standing alone in text ("3, 5.5 and -2"; not "Q1", "mp4"). */
static size_t text_values(const char *text, double *vals, size_t max) {
  size_t n = 0;
  for (const char *p = text; *p && n < max; p++) {
    int neg = *p == '-' && isdigit((unsigned char)p[1]);
    if (!neg && !isdigit((unsigned char)*p)) continue;
    if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '.' || p[-1] == '_')) {
      while (isalnum((unsigned char)p[1]) || p[1] == '.') p++;
      continue;
    }
    char *end = NULL;
    double d = strtod(p, &end);
    if (end && end > p && *(end - 1) == '.') end--; /* "5." ends a sentence */
    if (end && !isalnum((unsigned char)*end) && isfinite(d)) vals[n++] = d;
    p = end && end > p ? end - 1 : p;
  }
  return n;
}

static size_t collect(const char *text, const sci_input_file *files, size_t nfiles, double *vals) {
  size_t n = 0;
  for (size_t f = 0; f < nfiles && n < MAX_VALUES; f++)
    if (files[f].data) n = file_values(files[f].data, files[f].len, vals, n, MAX_VALUES);
  if (!n && text) n = text_values(text, vals, MAX_VALUES);
  if (!n)
    for (; n < 5; n++) vals[n] = (double)(n + 1);
  return n;
}

/* ---- PNG ---------------------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* Append a chunk (length, type, data, CRC of type + data) at out + *off. */
static void chunk(unsigned char *out, size_t *off, const char type[4], const unsigned char *data, uint32_t len) {
  unsigned char *p = out + *off;
  put32(p, len);
  memcpy(p + 4, type, 4);
  if (len) memcpy(p + 8, data, len);
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, p + 4, 4 + len);
  put32(p + 8 + len, (uint32_t)crc);
  *off += 12 + (size_t)len;
}

static void fill(unsigned char *raw, int x0, int y0, int x1, int y1, const unsigned char rgb[3]) {
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) memcpy(raw + (size_t)y * (1 + PNG_W * 3) + 1 + (size_t)x * 3, rgb, 3);
}

/* A bar chart of vals: white ground, black axes, one blue bar per value
 * (negative values drawn as 0), heights scaled to the largest value. */
static int png_chart(const double *vals, size_t n, unsigned char **out, size_t *out_len) {
  static const unsigned char white[3] = {255, 255, 255}, black[3] = {0, 0, 0}, blue[3] = {31, 119, 180};
  const size_t raw_len = (size_t)PNG_H * (1 + PNG_W * 3);
  unsigned char *raw = malloc(raw_len);
  if (!raw) return AW_ENOMEM;
  for (int y = 0; y < PNG_H; y++) raw[(size_t)y * (1 + PNG_W * 3)] = 0; /* filter: none */
  fill(raw, 0, 0, PNG_W, PNG_H, white);
  double max = 0;
  for (size_t i = 0; i < n; i++)
    if (vals[i] > max) max = vals[i];
  const int plot_w = PNG_W - 2 * MARGIN, plot_h = PNG_H - 2 * MARGIN, base = PNG_H - MARGIN;
  int slot = plot_w / (int)n;
  if (slot < 1) slot = 1;
  int bar = slot * 3 / 4 > 0 ? slot * 3 / 4 : 1;
  for (size_t i = 0; i < n; i++) {
    int h = max > 0 && vals[i] > 0 ? (int)lround(vals[i] / max * plot_h) : 0;
    int x0 = MARGIN + 1 + (int)i * slot + (slot - bar) / 2;
    if (h > 0 && x0 + bar <= PNG_W - MARGIN) fill(raw, x0, base - h, x0 + bar, base, blue);
  }
  fill(raw, MARGIN, MARGIN, MARGIN + 1, base + 1, black);             /* y axis */
  fill(raw, MARGIN, base, PNG_W - MARGIN, base + 1, black);           /* x axis */

  uLongf zlen = compressBound((uLong)raw_len);
  const size_t total = 8 + (12 + 13) + (12 + (size_t)zlen) + 12;
  unsigned char *png = malloc(total);
  if (!png) {
    free(raw);
    return AW_ENOMEM;
  }
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  memcpy(png, sig, 8);
  size_t off = 8;
  unsigned char ihdr[13];
  put32(ihdr, PNG_W);
  put32(ihdr + 4, PNG_H);
  ihdr[8] = 8;  /* bit depth */
  ihdr[9] = 2;  /* colour type: RGB */
  ihdr[10] = 0; /* deflate */
  ihdr[11] = 0; /* adaptive filtering */
  ihdr[12] = 0; /* no interlace */
  chunk(png, &off, "IHDR", ihdr, 13);
  /* deflate straight into the IDAT chunk's data field */
  unsigned char *idat = png + off + 8;
  int zrc = compress2(idat, &zlen, raw, (uLong)raw_len, 9);
  free(raw);
  if (zrc != Z_OK) {
    free(png);
    return AW_ENOMEM;
  }
  put32(png + off, (uint32_t)zlen);
  memcpy(png + off + 4, "IDAT", 4);
  uLong crc = crc32(crc32(0L, Z_NULL, 0), png + off + 4, 4 + (uInt)zlen);
  put32(png + off + 8 + zlen, (uint32_t)crc);
  off += 12 + (size_t)zlen;
  chunk(png, &off, "IEND", NULL, 0);
  *out = png;
  *out_len = off;
  return 0;
}

/* ---- CSV ---------------------------------------------------------------- */

static int csv_summary(const double *vals, size_t n, int large, unsigned char **out, size_t *out_len) {
  size_t cap = 32 + n * (NUM_MAX + 8) + NUM_MAX + 8;
  if (large) cap = LARGE_CSV_BYTES + 128 > cap ? LARGE_CSV_BYTES + 128 : cap;
  char *s = malloc(cap);
  if (!s) return AW_ENOMEM;
  size_t len = (size_t)snprintf(s, cap, "n,value\n");
  double sum = 0;
  for (size_t i = 0; i < n; i++) {
    sum += vals[i];
    len += (size_t)snprintf(s + len, cap - len, "%zu,%.10g\n", i + 1, vals[i]);
  }
  len += (size_t)snprintf(s + len, cap - len, "total,%.10g\n", sum);
  /* padding for tests of delivery by reference: comment lines, 64 bytes each */
  for (size_t line = 1; large && len < LARGE_CSV_BYTES; line++)
    len += (size_t)snprintf(s + len, cap - len, "# padding line %08zu to make a large file .................\n", line);
  *out = (unsigned char *)s;
  *out_len = len;
  return 0;
}

/* ---- the run ------------------------------------------------------------ */

static char *dup_printf(const char *fmt, ...) AW_PRINTF(1, 2);
static char *dup_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  return n < 0 ? NULL : s;
}

int sci_run(const char *text, const sci_input_file *files, size_t nfiles, sci_output **out) {
  *out = NULL;
  if (!sci_wants_tool(text)) return 0;
  double vals[MAX_VALUES];
  size_t n = collect(text, files, nfiles, vals);
  sci_output *o = calloc(1, sizeof *o);
  if (!o) return AW_ENOMEM;
  o->is_image = has_word(text, chart_words);
  int rc;
  if (o->is_image) {
    rc = png_chart(vals, n, &o->data, &o->len);
    o->filename = strdup("chart.png");
    o->media_type = strdup("image/png");
    o->code = strdup(
        "import pandas as pd\n"
        "import matplotlib.pyplot as plt\n"
        "values = read_values()\n"
        "plt.bar(range(1, len(values) + 1), values)\n"
        "plt.savefig('/mnt/data/chart.png')\n"
        "print(f'read {len(values)} values, wrote chart.png')\n");
    o->text = dup_printf("Here is the chart of %zu values: chart.png", n);
  } else {
    rc = csv_summary(vals, n, has_word(text, (const char *const[]){"large", NULL}), &o->data, &o->len);
    o->filename = strdup("summary.csv");
    o->media_type = strdup("text/csv");
    o->code = strdup(
        "import pandas as pd\n"
        "values = read_values()\n"
        "df = pd.DataFrame({'n': range(1, len(values) + 1), 'value': values})\n"
        "df.to_csv('/mnt/data/summary.csv', index=False)\n"
        "print(f'read {len(values)} values, wrote summary.csv')\n");
    o->text = dup_printf("Here is the summary of %zu values: summary.csv", n);
  }
  o->logs = dup_printf("read %zu values, wrote %s\n", n, o->is_image ? "chart.png" : "summary.csv");
  if (rc == 0 && (!o->filename || !o->media_type || !o->code || !o->text || !o->logs)) rc = AW_ENOMEM;
  if (rc != 0) {
    sci_output_free(o);
    return rc;
  }
  *out = o;
  return 0;
}

void sci_output_free(sci_output *o) {
  if (!o) return;
  free(o->code);
  free(o->logs);
  free(o->filename);
  free(o->media_type);
  free(o->data);
  free(o->text);
  free(o);
}

int sci_image_ack(int nimages, char *out, size_t out_size) {
  if (nimages < 1 || !out) return -1;
  int n = snprintf(out, out_size, "I see %d image%s. ", nimages, nimages == 1 ? "" : "s");
  return n < 0 || (size_t)n >= out_size ? -1 : n;
}
