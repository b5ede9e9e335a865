/* tools_int.h -- what the tool phase's two files share (worker_tools.c: the
 * phase's steps per event; tool_setup.c: the routes and the reply consumers
 * made at start-up, freed at the end).  Not for the rest of the worker:
 * worker_tools.h is its interface. */
#ifndef AW_TOOLS_INT_H
#define AW_TOOLS_INT_H

#include "worker_int.h"
#include "json_schema.h"
#include "tool_replies.h"
#include "tool_state.h"

typedef struct wkt_route {
  wk_tool_route r;
  char *name, *topic, *params, *reply_topic;
  jschema *schema;     /* NULL: no parameters declared, or not validated */
} wkt_route;

typedef struct wkt {
  wkt_route *routes;
  size_t nroutes;
  tstate ts;
  /* One reply consumer per distinct reply topic of the functions
   * (functions.<name>.reply_topic): a reply is accepted only from the topic
   * its call's correlation id pins. */
  trep **replies;
  size_t nreplies;
  const char **reply_topics; /* the distinct topics (borrowed from routes) */
  char owner[33];      /* this worker instance, random */
  struct wkt_ev *waiting; /* uthash by turn token */
  uv_timer_t tick;
  int wakes_pending;   /* an LPOP of the wake list is out */
  int stopping;
  unsigned long requests, rounds, timeouts, round_caps;
  unsigned long attempts; /* numbers this worker's claim tokens */
} wkt;

/** The route of a function, or NULL (tool_setup.c). */
const wkt_route *wkt_route_for(const wkt *T, const char *name);

/** A reply this worker consumed completed a round of one of its own waiting
 *  turns: collect it now (worker_tools.c; the reply consumers' callback). */
void wkt_complete_local(void *opaque, const char *conv, const char *turn);

#endif
