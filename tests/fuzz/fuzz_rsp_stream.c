/* fuzz_rsp_stream.c -- libFuzzer target: the Responses stream mapper
 * (rsp_stream_event) and what it feeds (the answer collector, its views)
 * on arbitrary event data.  The input is split at NUL bytes into the data
 * of successive events; the first byte chooses want_deltas and a small text
 * cap so that the bound is reached.  Checks: no crash, no leak, deltas only
 * after the response is known, the answer never exceeds its cap, the built
 * views point at NUL-terminated strings, and a terminal event is final.
 * Each event's data is also scanned as a conversation items page (the
 * recovery path) against a fixed user input (bit 3 of the first byte: one
 * with an image and an attached file, compared part by part), and its
 * items are added as a history page lists them (rsp_answer_add_listed:
 * roles, annotations).  Bit 4 asks for steps: the hosted tools' items
 * (file_search_call, code_interpreter_call) and the container files
 * messages cite are collected beside the answer (rsp_hosted.c); their
 * views must be whole (ids, types, path-safe file refs) and their budget
 * kept.  Seeds (no corpus is kept): the items of
 * tests/unit/test_backend_responses_files.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rsp_int.h"

static void check_views(rsp_answer *a) {
  const contract_out_message *m;
  const be_tool_call *c;
  size_t nm, nc, total = 0;
  if (rsp_answer_build(a, &m, &nm, &c, &nc) != AW_OK) return;
  for (size_t i = 0; i < nm; i++)
    for (size_t j = 0; j < m[i].nparts; j++) {
      if (strlen(m[i].parts[j].text) != m[i].parts[j].text_len) abort();
      total += m[i].parts[j].text_len;
      for (size_t k = 0; k < m[i].parts[j].nannotations; k++) {
        const contract_annotation *an = &m[i].parts[j].annotations[k];
        if (!an->type || !an->text || !an->file_id || an->start_index < 0 || an->end_index < an->start_index)
          abort();
      }
    }
  if (total != a->text_len || total > a->max_text) abort();
  if (nc > RSP_CALLS_MAX) abort();
  for (size_t i = 0; i < nc; i++)
    if (!c[i].id[0] || !c[i].name[0] || !c[i].arguments) abort();
  const contract_step *st;
  const gf_ref *refs;
  size_t ns, nr;
  if (rsp_hosted_build(&a->hosted, &st, &ns, &refs, &nr) != AW_OK) return;
  if (ns && !a->hosted.want_steps) abort();
  if (a->hosted.arena.len > a->hosted.arena.max || nr > GF_MAX_FILES) abort();
  for (size_t i = 0; i < ns; i++) {
    if (!st[i].type || !st[i].id || !st[i].id[0]) abort();
    for (size_t k = 0; k < st[i].nqueries; k++)
      if (!st[i].queries[k]) abort();
    for (size_t k = 0; k < st[i].nresults; k++)
      if (!st[i].results[k].file_id || !st[i].results[k].file_id[0] || !st[i].results[k].filename) abort();
    for (size_t k = 0; k < st[i].noutputs; k++) {
      const contract_step_output *o = &st[i].outputs[k];
      if (strcmp(o->type, "logs") == 0 ? !o->logs : (strcmp(o->type, "image") != 0 || !rsp_id_ok(o->file_id)))
        abort();
    }
  }
  for (size_t i = 0; i < nr; i++)
    if (!rsp_id_ok(refs[i].file_id) || !rsp_id_ok(refs[i].container_id)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int want = data[0] & 1;
  size_t cap = (data[0] & 2) ? 16 : 4096;
  const char *known = (data[0] & 4) ? "resp_1" : NULL; /* a resumed stream */
  int rich = (data[0] & 8) != 0, steps = (data[0] & 16) != 0;
  data++;
  size--;

  rsp_answer a;
  rsp_answer_init(&a, cap);
  a.hosted.want_steps = steps;
  rsp_stream st;
  rsp_stream_init(&st, &a, want, known);
  rsp_answer scan_ans, listed;
  rsp_answer_init(&scan_ans, cap);
  scan_ans.hosted.want_steps = steps;
  rsp_answer_init(&listed, cap);
  const contract_part parts[] = {{.type = CONTRACT_PART_TEXT, .text = "Hi there", .text_len = 8},
                                 {.type = CONTRACT_PART_IMAGE_FILE, .text = "file-img"}};
  const contract_attachment att = {.file_id = "file-doc", .tools = CONTRACT_ATT_FILE_SEARCH};
  const be_assistant asst = {.model = "m"};
  be_turn_input in = {.assistant = &asst, .parts = parts, .nparts = rich ? 2 : 1,
                      .attachments = rich ? &att : NULL, .nattachments = rich ? 1 : 0};
  cJSON *input = NULL;
  if (rsp_input_user(&in, &input) != AW_OK) abort();

  int terminal_seen = 0;
  size_t i = 0;
  while (i <= size) {
    const uint8_t *nul = memchr(data + i, 0, size - i);
    size_t n = nul ? (size_t)(nul - (data + i)) : size - i;
    char *ev_data = malloc(n + 1);
    memcpy(ev_data, data + i, n);
    ev_data[n] = '\0';
    rsp_ev e;
    int rc = rsp_stream_event(&st, ev_data, n, &e);
    if (rc != AW_OK && rc != AW_EPARSE) abort();
    if (terminal_seen && e != RSP_EV_NONE) abort();
    if (e == RSP_EV_DELTA && (!st.created || !st.delta || strlen(st.delta) != st.delta_len)) abort();
    if (e == RSP_EV_TERMINAL) terminal_seen = 1;
    if (a.text_len > cap) abort();

    cJSON *page = cJSON_ParseWithLength(ev_data, n);
    if (page) {
      int found, ready, incomplete;
      rc = rsp_items_scan(page, input, &scan_ans, &found, &ready, &incomplete);
      if (rc == AW_OK && ready && !found) abort();
      const cJSON *it;
      cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(page, "data")) {
        int added;
        rc = rsp_answer_add_listed(&listed, it, &added);
        if (rc != AW_OK && rc != AW_EPARSE && rc != AW_ETOOBIG) abort();
        if (listed.text_len > cap) abort();
      }
      cJSON_Delete(page);
    }
    free(ev_data);
    if (!nul) break;
    i += n + 1;
  }
  check_views(&a);
  check_views(&scan_ans);
  check_views(&listed);
  cJSON_Delete(input);
  rsp_stream_free(&st);
  rsp_answer_free(&a);
  rsp_answer_free(&scan_ans);
  rsp_answer_free(&listed);
  return 0;
}
