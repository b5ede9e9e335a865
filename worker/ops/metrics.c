/* metrics.c -- Prometheus counters, gauges and histograms, and the text
 * exposition format 0.0.4.
 *
 * Layout: a registry is a list of families in registration order; a family is
 * a list of series.  Each series keeps its label set pre-rendered and escaped
 * (`a="x",b="y"`) so rendering is appends only, and its values inline (a
 * histogram's bucket counts in one array allocated at registration), so
 * updates touch one cache line and never allocate.  Lookups by name happen at
 * registration only and are linear; a worker registers a few dozen series.
 */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HELP 1024

const double met_latency_ms_buckets[13] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};

typedef enum { T_COUNTER, T_GAUGE, T_HISTOGRAM } mtype;

struct family;

typedef struct series {
  struct family *fam;
  struct series *next;
  char *values[MET_MAX_LABELS]; /* raw label values, for lookup */
  char *labels;                 /* `a="x",b="y"` escaped; "" without labels */
  double value;                 /* counter, gauge; histogram sum */
  uint64_t count;               /* histogram: observations */
  uint64_t *buckets;            /* histogram: per-bucket (not cumulative), nbounds+1 */
} series;

/* The handle types are the series itself; distinct struct tags keep a gauge
 * handle from being passed to met_inc at compile time. */
struct met_counter_ref { series s; };
struct met_gauge_ref { series s; };
struct met_histogram_ref { series s; };

typedef struct family {
  struct family *next;
  char *name;
  char *help;
  mtype type;
  size_t nlabels;
  char *label_names[MET_MAX_LABELS];
  size_t nbounds;
  double bounds[MET_MAX_BUCKETS];
  series *first, *last;
} family;

struct met_registry {
  family *first, *last;
  size_t nseries, max_series;
};

/* ---- names and values ---------------------------------------------------- */

static int valid_metric_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > MET_MAX_NAME) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
             (i > 0 && c >= '0' && c <= '9');
    if (!ok) return 0;
  }
  return 1;
}

static int valid_label_name(const char *s) {
  if (strchr(s, ':')) return 0;
  if (strncmp(s, "__", 2) == 0) return 0; /* reserved for Prometheus itself */
  return valid_metric_name(s);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

char *met_format_value(double v, char *s, size_t n) {
  if (isnan(v)) {
    snprintf(s, n, "NaN");
  } else if (isinf(v)) {
    snprintf(s, n, v > 0 ? "+Inf" : "-Inf");
  } else if (v == 0) {
    snprintf(s, n, "0"); /* also -0 */
  } else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
    /* Integral and exactly representable: plain digits ("10000", not
     * "1e+04"), which is what counts and bucket bounds look like. */
    snprintf(s, n, "%.0f", v);
  } else {
    /* The shortest %g that reads back to the same double; 17 digits always
     * do.  Costs up to 17 snprintf calls, on render only. */
    for (int p = 1; p <= 17; p++) {
      snprintf(s, n, "%.*g", p, v);
      if (strtod(s, NULL) == v) break;
    }
  }
  return s;
}

/* Append s with \\ and \n escaped, and \" too when quotes is set (label
 * values; HELP text leaves quotes alone, as the format says). */
static int append_escaped(buf *b, const char *s, int quotes) {
  const char *run = s;
  for (const char *p = s;; p++) {
    const char *esc = NULL;
    if (*p == '\\') esc = "\\\\";
    else if (*p == '\n') esc = "\\n";
    else if (*p == '"' && quotes) esc = "\\\"";
    else if (*p != '\0') continue;
    int rc = buf_append(b, run, (size_t)(p - run));
    if (rc) return rc;
    if (!esc) return AW_OK;
    if ((rc = buf_appends(b, esc))) return rc;
    run = p + 1;
  }
}

/* ---- registration -------------------------------------------------------- */

int met_registry_new(size_t max_series, met_registry **out) {
  *out = NULL;
  if (max_series == 0) return AW_EINVAL;
  met_registry *r = calloc(1, sizeof *r);
  if (!r) return AW_ENOMEM;
  r->max_series = max_series;
  *out = r;
  return AW_OK;
}

static void series_free(series *s, size_t nlabels) {
  for (size_t i = 0; i < nlabels; i++) free(s->values[i]);
  free(s->labels);
  free(s->buckets);
  free(s);
}

static void family_free(family *f) {
  for (series *s = f->first, *next; s; s = next) {
    next = s->next;
    series_free(s, f->nlabels);
  }
  for (size_t i = 0; i < f->nlabels; i++) free(f->label_names[i]);
  free(f->name);
  free(f->help);
  free(f);
}

void met_registry_free(met_registry *r) {
  if (!r) return;
  for (family *f = r->first, *next; f; f = next) {
    next = f->next;
    family_free(f);
  }
  free(r);
}

static family *find_family(const met_registry *r, const char *name) {
  for (family *f = r->first; f; f = f->next)
    if (strcmp(f->name, name) == 0) return f;
  return NULL;
}

static family *family_new(const char *name, const char *help, mtype type, const char *const *kv,
                          size_t nlabels, const double *bounds, size_t nbounds) {
  family *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->type = type;
  f->name = strdup(name);
  f->help = strdup(help);
  int ok = f->name && f->help;
  for (size_t i = 0; i < nlabels; i++) {
    f->label_names[i] = strdup(kv[2 * i]);
    f->nlabels = i + 1;
    if (!f->label_names[i]) ok = 0;
  }
  if (nbounds) memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
  f->nbounds = nbounds;
  if (!ok) {
    family_free(f);
    return NULL;
  }
  return f;
}

/* Does f fit a registration with these properties? */
static int family_matches(const family *f, const char *help, mtype type, const char *const *kv,
                          size_t nlabels, const double *bounds, size_t nbounds) {
  if (f->type != type || strcmp(f->help, help) != 0 || f->nlabels != nlabels) return 0;
  for (size_t i = 0; i < nlabels; i++)
    if (strcmp(f->label_names[i], kv[2 * i]) != 0) return 0;
  if (f->nbounds != nbounds) return 0;
  for (size_t i = 0; i < nbounds; i++)
    if (f->bounds[i] != bounds[i]) return 0;
  return 1;
}

static series *find_series(const family *f, const char *const *kv) {
  for (series *s = f->first; s; s = s->next) {
    size_t i = 0;
    while (i < f->nlabels && strcmp(s->values[i], kv[2 * i + 1]) == 0) i++;
    if (i == f->nlabels) return s;
  }
  return NULL;
}

static series *series_new(family *f, const char *const *kv) {
  series *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->fam = f;
  buf lb;
  buf_init(&lb, (MET_MAX_NAME + 2 * MET_MAX_LABEL_VALUE + 4) * MET_MAX_LABELS);
  int rc = buf_appends(&lb, ""); /* allocate, so labels is never NULL */
  for (size_t i = 0; i < f->nlabels && rc == AW_OK; i++) {
    if (!(s->values[i] = strdup(kv[2 * i + 1]))) rc = AW_ENOMEM;
    if (rc == AW_OK && i) rc = buf_appends(&lb, ",");
    if (rc == AW_OK) rc = buf_appendf(&lb, "%s=\"", f->label_names[i]);
    if (rc == AW_OK) rc = append_escaped(&lb, kv[2 * i + 1], 1);
    if (rc == AW_OK) rc = buf_appends(&lb, "\"");
  }
  s->labels = buf_take(&lb, NULL);
  if (rc == AW_OK && f->type == T_HISTOGRAM &&
      !(s->buckets = calloc(f->nbounds + 1, sizeof *s->buckets)))
    rc = AW_ENOMEM;
  if (rc != AW_OK) {
    series_free(s, f->nlabels);
    return NULL;
  }
  return s;
}

/* The one registration path every met_counter/gauge/histogram goes through. */
static int reg(met_registry *r, const char *name_in, const char *help, mtype type,
               const double *bounds, size_t nbounds, const char *const *kv, size_t nlabels,
               series **out) {
  *out = NULL;
  if (!r || !name_in || !help || (nlabels && !kv) || nlabels > MET_MAX_LABELS) return AW_EINVAL;
  if (strlen(help) > MAX_HELP) return AW_EINVAL;
  char name[MET_MAX_NAME + sizeof "_total"];
  /* Validate before appending "_total", or "" would become a valid "_total". */
  if (!valid_metric_name(name_in)) return AW_EINVAL;
  snprintf(name, sizeof name, "%s%s", name_in,
           type == T_COUNTER && !ends_with(name_in, "_total") ? "_total" : "");
  if (!valid_metric_name(name)) return AW_EINVAL;
  if (type == T_HISTOGRAM) {
    if (ends_with(name, "_bucket") || ends_with(name, "_sum") || ends_with(name, "_count"))
      return AW_EINVAL;
    if (!bounds || nbounds == 0 || nbounds > MET_MAX_BUCKETS) return AW_EINVAL;
    for (size_t i = 0; i < nbounds; i++)
      if (!isfinite(bounds[i]) || (i && !(bounds[i] > bounds[i - 1]))) return AW_EINVAL;
  }
  for (size_t i = 0; i < nlabels; i++) {
    const char *ln = kv[2 * i], *lv = kv[2 * i + 1];
    if (!ln || !lv || !valid_label_name(ln) || strlen(lv) > MET_MAX_LABEL_VALUE) return AW_EINVAL;
    if (type == T_HISTOGRAM && strcmp(ln, "le") == 0) return AW_EINVAL;
    for (size_t j = 0; j < i; j++)
      if (strcmp(kv[2 * j], ln) == 0) return AW_EINVAL;
  }

  family *f = find_family(r, name);
  if (f) {
    if (!family_matches(f, help, type, kv, nlabels, bounds, nbounds)) return AW_EINVAL;
    series *s = find_series(f, kv);
    if (s) {
      *out = s;
      return AW_OK;
    }
  }
  if (r->nseries >= r->max_series) return AW_ETOOBIG;
  int new_family = f == NULL;
  if (new_family && !(f = family_new(name, help, type, kv, nlabels, bounds, nbounds)))
    return AW_ENOMEM;
  series *s = series_new(f, kv);
  if (!s) {
    if (new_family) family_free(f);
    return AW_ENOMEM;
  }
  if (new_family) {
    if (r->last) r->last->next = f;
    else r->first = f;
    r->last = f;
  }
  if (f->last) f->last->next = s;
  else f->first = s;
  f->last = s;
  r->nseries++;
  *out = s;
  return AW_OK;
}

/* Collect name/value pairs up to the NULL sentinel; AW_EINVAL for an odd
 * count or too many. */
static int collect(va_list ap, const char **kv, size_t *nlabels) {
  size_t n = 0;
  const char *s;
  while ((s = va_arg(ap, const char *)) != NULL) {
    if (n == 2 * MET_MAX_LABELS) return AW_EINVAL;
    kv[n++] = s;
  }
  if (n % 2) return AW_EINVAL;
  *nlabels = n / 2;
  return AW_OK;
}

int met_counterv(met_registry *r, const char *name, const char *help, const char *const *kv,
                 size_t nlabels, met_counter_ref **out) {
  series *s;
  int rc = reg(r, name, help, T_COUNTER, NULL, 0, kv, nlabels, &s);
  *out = (met_counter_ref *)s;
  return rc;
}

int met_counter(met_registry *r, const char *name, const char *help, met_counter_ref **out, ...) {
  const char *kv[2 * MET_MAX_LABELS];
  size_t n = 0;
  va_list ap;
  va_start(ap, out);
  int rc = collect(ap, kv, &n);
  va_end(ap);
  if (rc) {
    *out = NULL;
    return rc;
  }
  return met_counterv(r, name, help, kv, n, out);
}

int met_gaugev(met_registry *r, const char *name, const char *help, const char *const *kv,
               size_t nlabels, met_gauge_ref **out) {
  series *s;
  int rc = reg(r, name, help, T_GAUGE, NULL, 0, kv, nlabels, &s);
  *out = (met_gauge_ref *)s;
  return rc;
}

int met_gauge(met_registry *r, const char *name, const char *help, met_gauge_ref **out, ...) {
  const char *kv[2 * MET_MAX_LABELS];
  size_t n = 0;
  va_list ap;
  va_start(ap, out);
  int rc = collect(ap, kv, &n);
  va_end(ap);
  if (rc) {
    *out = NULL;
    return rc;
  }
  return met_gaugev(r, name, help, kv, n, out);
}

int met_histogramv(met_registry *r, const char *name, const char *help, const double *bounds,
                   size_t nbounds, const char *const *kv, size_t nlabels,
                   met_histogram_ref **out) {
  series *s;
  int rc = reg(r, name, help, T_HISTOGRAM, bounds, nbounds, kv, nlabels, &s);
  *out = (met_histogram_ref *)s;
  return rc;
}

int met_histogram(met_registry *r, const char *name, const char *help, const double *bounds,
                  size_t nbounds, met_histogram_ref **out, ...) {
  const char *kv[2 * MET_MAX_LABELS];
  size_t n = 0;
  va_list ap;
  va_start(ap, out);
  int rc = collect(ap, kv, &n);
  va_end(ap);
  if (rc) {
    *out = NULL;
    return rc;
  }
  return met_histogramv(r, name, help, bounds, nbounds, kv, n, out);
}

/* ---- updates (hot path) -------------------------------------------------- */

void met_inc(met_counter_ref *c) { c->s.value += 1; }

void met_add(met_counter_ref *c, double v) {
  if (v > 0) c->s.value += v; /* false for NaN and negatives */
}

void met_counter_set(met_counter_ref *c, double v) {
  if (v > c->s.value) c->s.value = v;
}

double met_counter_value(const met_counter_ref *c) { return c->s.value; }

void met_gauge_set(met_gauge_ref *g, double v) { g->s.value = v; }
void met_gauge_add(met_gauge_ref *g, double v) { g->s.value += v; }
double met_gauge_value(const met_gauge_ref *g) { return g->s.value; }

void met_observe(met_histogram_ref *h, double v) {
  if (isnan(v)) return;
  const family *f = h->s.fam;
  size_t i = 0;
  while (i < f->nbounds && v > f->bounds[i]) i++;
  h->s.buckets[i]++;
  h->s.count++;
  h->s.value += v;
}

uint64_t met_histogram_count(const met_histogram_ref *h) { return h->s.count; }

/* ---- rendering ----------------------------------------------------------- */

/* name{labels[,extra]} value\n -- braces omitted when there are no labels. */
static int sample(buf *b, const char *name, const char *suffix, const char *labels,
                  const char *extra, double v) {
  char num[64];
  met_format_value(v, num, sizeof num);
  const char *sep = labels[0] && extra ? "," : "";
  if (labels[0] || extra)
    return buf_appendf(b, "%s%s{%s%s%s} %s\n", name, suffix, labels, sep, extra ? extra : "", num);
  return buf_appendf(b, "%s%s %s\n", name, suffix, num);
}

static int render_family(const family *f, buf *b) {
  static const char *const type_names[] = {"counter", "gauge", "histogram"};
  int rc = AW_OK;
  if (f->help[0]) {
    if ((rc = buf_appendf(b, "# HELP %s ", f->name))) return rc;
    if ((rc = append_escaped(b, f->help, 0))) return rc;
    if ((rc = buf_appends(b, "\n"))) return rc;
  }
  if ((rc = buf_appendf(b, "# TYPE %s %s\n", f->name, type_names[f->type]))) return rc;
  for (const series *s = f->first; s; s = s->next) {
    if (f->type != T_HISTOGRAM) {
      if ((rc = sample(b, f->name, "", s->labels, NULL, s->value))) return rc;
      continue;
    }
    uint64_t cum = 0;
    char le[80], num[64];
    for (size_t i = 0; i < f->nbounds; i++) {
      cum += s->buckets[i];
      snprintf(le, sizeof le, "le=\"%s\"", met_format_value(f->bounds[i], num, sizeof num));
      if ((rc = sample(b, f->name, "_bucket", s->labels, le, (double)cum))) return rc;
    }
    if ((rc = sample(b, f->name, "_bucket", s->labels, "le=\"+Inf\"", (double)s->count))) return rc;
    if ((rc = sample(b, f->name, "_sum", s->labels, NULL, s->value))) return rc;
    if ((rc = sample(b, f->name, "_count", s->labels, NULL, (double)s->count))) return rc;
  }
  return AW_OK;
}

int met_render(const met_registry *r, buf *out) {
  for (const family *f = r->first; f; f = f->next) {
    int rc = render_family(f, out);
    if (rc) return rc;
  }
  return AW_OK;
}
