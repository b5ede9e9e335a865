/* metrics.h -- a small registry of Prometheus metrics (prefix met_).
 *
 * Three kinds: counters (monotonic), gauges, and histograms with fixed
 * buckets.  A metric family has one name, one help text, one type and one
 * fixed set of label names; each distinct combination of label values is a
 * series the caller registers once, at start-up, and keeps a handle to:
 *
 *   met_counter_ref *ok;
 *   met_counter(reg, "aw_events_total", "Events by outcome.", &ok,
 *               "outcome", "answered", (const char *)NULL);
 *   ...
 *   met_inc(ok);                            // hot path: O(1), no allocation
 *
 * Registration allocates (and is O(series) because it looks for an existing
 * series first: registering the same name and label values again returns the
 * same handle).  Updates never allocate: met_inc/met_add/met_gauge_set are
 * O(1), met_observe is O(buckets) (a linear scan; with ~13 buckets that beats
 * a binary search on cache behaviour and costs a few ns).  Label values must
 * therefore come from a bounded set known up front (endpoint x status class,
 * outcome...), never from input: unbounded label values are how a metrics
 * registry becomes a memory leak.  The registry has a series limit set at
 * creation for the same reason.
 *
 * met_render writes the Prometheus text exposition format 0.0.4: families in
 * registration order, series in registration order within a family, a HELP
 * line (when help is not empty) and a TYPE line per family, label values
 * escaped (\\, \", \n), help text escaped (\\, \n), histograms as cumulative
 * _bucket{le=".."} series ending with le="+Inf", then _sum and _count.
 * Values are printed exactly: integral values below 2^53 in plain decimal,
 * others with the fewest significant digits that read back to the same
 * double; +Inf, -Inf and NaN as Prometheus spells them.
 *
 * @locality the loop thread only: nothing here is locked or atomic.  To
 * expose metrics to another thread, render them on the loop thread and hand
 * over the text (that is what ops_http does).
 */
#ifndef AW_METRICS_H
#define AW_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "aw_error.h"
#include "buf.h"

#if defined(__GNUC__)
#define MET_SENTINEL __attribute__((sentinel))
#else
#define MET_SENTINEL
#endif

/** Label names per family, at most. */
#define MET_MAX_LABELS 4
/** Buckets per histogram (excluding +Inf), at most. */
#define MET_MAX_BUCKETS 32
/** Length of a metric or label name, at most. */
#define MET_MAX_NAME 128
/** Length of a label value, at most. */
#define MET_MAX_LABEL_VALUE 128

typedef struct met_registry met_registry;
typedef struct met_counter_ref met_counter_ref;
typedef struct met_gauge_ref met_gauge_ref;
typedef struct met_histogram_ref met_histogram_ref;

/** Latency buckets in milliseconds, for histograms of API call durations:
 *  1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000. */
extern const double met_latency_ms_buckets[13];
#define MET_LATENCY_MS_NBUCKETS 13

/** Create an empty registry holding at most max_series series (a histogram
 *  series counts as one).  AW_EINVAL for max_series 0, AW_ENOMEM. */
int met_registry_new(size_t max_series, met_registry **out) AW_MUST_CHECK;

/** Free the registry and every handle it gave out.  Safe on NULL. */
void met_registry_free(met_registry *r);

/** Register (or find) a counter series.  name is the sample name and ends in
 *  "_total"; a name without it gets it appended ("aw_events" ->
 *  "aw_events_total").  help must not be NULL ("" omits the HELP line).  The
 *  variadic part is label name/value pairs ending with a NULL pointer (pass
 *  (const char *)NULL; no labels: just the NULL).  Strings are copied.
 *  AW_EINVAL for a bad name, label name or value, an odd number of label
 *  strings, or a family already registered with another type, help text or
 *  label names; AW_ETOOBIG past the series limit; AW_ENOMEM. */
int met_counter(met_registry *r, const char *name, const char *help, met_counter_ref **out,
                ...) AW_MUST_CHECK MET_SENTINEL;

/** As met_counter with nlabels name/value pairs in kv (kv[2i] = name,
 *  kv[2i+1] = value), for callers that build label sets in a loop. */
int met_counterv(met_registry *r, const char *name, const char *help, const char *const *kv,
                 size_t nlabels, met_counter_ref **out) AW_MUST_CHECK;

/** Register (or find) a gauge series.  Same rules as met_counter, except the
 *  name is used as given. */
int met_gauge(met_registry *r, const char *name, const char *help, met_gauge_ref **out,
              ...) AW_MUST_CHECK MET_SENTINEL;
int met_gaugev(met_registry *r, const char *name, const char *help, const char *const *kv,
               size_t nlabels, met_gauge_ref **out) AW_MUST_CHECK;

/** Register (or find) a histogram series with nbounds upper bounds (finite,
 *  strictly increasing, at most MET_MAX_BUCKETS; copied; +Inf is implied).
 *  Every series of one family must use the same bounds.  "le" is not allowed
 *  as a label name.  The name must not end in _bucket, _sum or _count. */
int met_histogram(met_registry *r, const char *name, const char *help, const double *bounds,
                  size_t nbounds, met_histogram_ref **out, ...) AW_MUST_CHECK MET_SENTINEL;
int met_histogramv(met_registry *r, const char *name, const char *help, const double *bounds,
                   size_t nbounds, const char *const *kv, size_t nlabels,
                   met_histogram_ref **out) AW_MUST_CHECK;

/** Counter += 1.  O(1), no allocation. */
void met_inc(met_counter_ref *c);
/** Counter += v; a negative or NaN v is ignored (counters never go down). */
void met_add(met_counter_ref *c, double v);
/** Set a counter that mirrors a monotonic count kept elsewhere (e.g. a
 *  wk_stats field copied in just before rendering).  A value below the
 *  current one is ignored, so the exposed counter stays monotonic. */
void met_counter_set(met_counter_ref *c, double v);
/** Current value (for tests and logs). */
double met_counter_value(const met_counter_ref *c);

/** Gauge = v. */
void met_gauge_set(met_gauge_ref *g, double v);
/** Gauge += v (v may be negative). */
void met_gauge_add(met_gauge_ref *g, double v);
/** Current value. */
double met_gauge_value(const met_gauge_ref *g);

/** Count v into the first bucket whose bound is >= v (or +Inf), add it to
 *  the sum.  NaN is ignored.  O(buckets), no allocation. */
void met_observe(met_histogram_ref *h, double v);
/** Number of observations so far. */
uint64_t met_histogram_count(const met_histogram_ref *h);

/** Append the whole registry to out in the text exposition format 0.0.4 (see
 *  the top of this file).  out is not reset first.  AW_ETOOBIG when out's
 *  maximum is reached (out is then empty, as buf_append leaves it), AW_ENOMEM.
 *  Content-Type for the result: "text/plain; version=0.0.4; charset=utf-8". */
int met_render(const met_registry *r, buf *out) AW_MUST_CHECK;

/** Write v as the exposition format does (see above) into s (size n >= 32).
 *  Returns s. */
char *met_format_value(double v, char *s, size_t n);

#endif
