/* sim_page.h -- one page of a list of cJSON objects (prefix spage_).
 *
 * Why not sreq_list(): that one pages the store's sobj lists and finds a
 * cursor through the store's id map.  The Files and Vector Stores APIs keep
 * their objects outside that store (a vector store file has its file's id,
 * which the map already gives to the file), and listFiles takes a limit up
 * to 10,000 where every other list stops at 100.  This pages any array of
 * objects that carry an "id", in creation order, the same way: order
 * asc|desc (default desc), limit, after and (where the operation has it)
 * before, with the same 400s.  Cursors are found by a linear scan: O(n) per
 * page, fine for the objects of a test.
 *
 * @locality MHD threads; the caller holds whatever lock keeps objs alive.
 */
#ifndef SIM_PAGE_H
#define SIM_PAGE_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "sim_api.h"

typedef struct spage_opts {
  long default_limit, max_limit;
  int allow_before; /* 0: a `before` query argument is 400 unknown_parameter */
} spage_opts;

/** Reply 200 with {"object":"list","data","first_id","last_id","has_more"}
 *  for objs[0..n) (creation order; borrowed), or a 400 for a bad limit,
 *  order or cursor. */
void spage_reply(const sapi_req *q, sapi_reply *r, cJSON *const *objs, size_t n, const spage_opts *o);

#endif
