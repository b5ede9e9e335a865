/* rkeys.h -- the one place Redis key names are built (prefix rk_).
 *
 * Why a module of its own: keys are made of ids that come from producers
 * (conversation, event, tenant), and ids may hold any byte.  Pasted into a
 * key as they are, `v}:ev:x` as a conversation id gives the same string as
 * another conversation's outcome key, and a `}` moves the Redis Cluster hash
 * tag.  Every store (conv_store.c, history_store.c, tool_state.c) builds its
 * keys here, so the rule below holds for all of them or for none.
 *
 * Encoding (rk_encode): percent-encoding of '%', '{', '}', ':', space, the
 * control bytes (< 0x20, 0x7f) and every byte >= 0x80, as %XX with
 * upper-case hex digits; every other byte stands for itself, so ordinary ids
 * ("conv-1", "evt_42") read the same in a key as in the event.  It is
 * injective, and rk_decode accepts exactly its outputs (canonical: no
 * lower-case hex, no escaped byte that needs none, no raw byte that needs
 * one), so decode(encode(x)) == x and encode(decode(y)) == y.
 *
 * Key grammar ("enc" = rk_encode; no encoded id holds ':', '{' or '}'):
 *
 *   conversation keys   <prefix>:{<tag>}:<suffix>
 *     tag      c:<enc conversation>                     (no tenant)
 *              t:<enc tenant>:c:<enc conversation>      (with a tenant)
 *     suffix   <handle name>        RK_HANDLE: the backend's handle key
 *                                   (be_handle_key: "thread", "conv"; one
 *                                   lower-case word, none of the words below)
 *              ev:<enc event>       RK_OUTCOME
 *              evp:<enc event>      RK_PROGRESS
 *              turn:<enc token>     RK_TURN (tool state of a waiting turn)
 *              hist                 RK_HIST
 *              hist:ids             RK_HIST_IDS
 *              hist:p:<enc event>   RK_HIST_PENDING
 *              evf:<enc event>      RK_UPLOADS (the files the event uploaded:
 *                                   event/attach.h)
 *   fleet keys          <prefix>:<word>:<enc id>
 *              tc:<digest>          RK_CORR (a pending call's correlation record)
 *              wake:<owner>         RK_WAKE (a worker's wake list)
 *              kb:<enc store>       RK_KB (a knowledge store: its vs_ id and
 *                                   documents, kb_sync.h)
 *              kblock:<enc store>   RK_KB_LOCK (the sync holding that store)
 *
 * The hash tag {...} holds exactly the encoded tenant and conversation, so
 * all keys of one (tenant, conversation) live in one cluster slot and no two
 * distinct (tenant, conversation, kind, id) tuples share a key: the tag ends
 * at the first '}' (none inside), its 't:'/'c:' words say whether a tenant
 * is there, and the suffixes differ in their first word or in how many
 * ':'-separated parts they have.  The prefix (redis.prefix) must hold no
 * brace, or the cluster would take its braces for the tag (rk_prefix_ok;
 * the configuration refuses such a prefix at start-up).
 *
 * Conversation references.  The stores and the backends' store ports name a
 * conversation by one string, its *reference*, so that the tenant travels
 * with the conversation id through code that knows nothing of tenants (the
 * backends, the tool-state records that lead a reply back to its turn):
 *   without tenants (worker.tenant_source none)  the conversation id as it is
 *   with tenants                                 <enc tenant>:<conversation id>
 * (split at the first ':', which enc never produces).  Which of the two a
 * reference is, is a property of the deployment (rk_space.tenanted), not of
 * the string: a conversation id may itself hold ':'.
 *
 * Bounds.  Tenants are at most RK_TENANT_MAX bytes, ids at most RK_ID_MAX,
 * a reference at most RK_REF_MAX - 1 and a key at most RK_KEY_MAX - 1: the
 * largest key the contract's ids can make fits RK_KEY_MAX.  Anything longer
 * is an error value (AW_ETOOBIG), never a truncated key.
 *
 * Pure functions: any thread, no allocation.
 */
#ifndef AW_RKEYS_H
#define AW_RKEYS_H

#include <stddef.h>
#include "aw_error.h"

#define RK_PREFIX_SIZE 64   /* redis.prefix, NUL included */
#define RK_TENANT_MAX 64    /* bytes of a tenant */
#define RK_ID_MAX 256       /* bytes of an id in a key (conversation 256, event 128) */
/* enc(tenant) ':' conversation NUL */
#define RK_REF_MAX (3 * RK_TENANT_MAX + 1 + RK_ID_MAX + 1)
/* prefix ":{t:" enc(tenant) ":c:" enc(conversation) "}:hist:p:" enc(event) NUL */
#define RK_KEY_MAX (RK_PREFIX_SIZE + 4 + 3 * RK_TENANT_MAX + 3 + 3 * RK_ID_MAX + 9 + 3 * RK_ID_MAX + 1)

/** A deployment's key space: the prefix, and whether conversation
 *  references carry a tenant. */
typedef struct rk_space {
  char prefix[RK_PREFIX_SIZE];
  int tenanted;
} rk_space;

/** The kinds of per-conversation keys (see the grammar above). */
typedef enum rk_kind {
  RK_HANDLE = 0,   /* arg: the backend's handle name */
  RK_OUTCOME,      /* arg: event id */
  RK_PROGRESS,     /* arg: event id */
  RK_TURN,         /* arg: turn token */
  RK_HIST,         /* arg: NULL */
  RK_HIST_IDS,     /* arg: NULL */
  RK_HIST_PENDING, /* arg: event id */
  RK_UPLOADS,      /* arg: event id */
} rk_kind;

/** The kinds of fleet-wide keys. */
typedef enum rk_fleet_kind {
  RK_CORR = 0,     /* arg: the correlation id's digest */
  RK_WAKE,         /* arg: the owner's instance id */
  RK_KB,           /* arg: a knowledge store's configured name */
  RK_KB_LOCK,      /* arg: the same */
} rk_fleet_kind;

/** 1 when prefix can head keys: 1..RK_PREFIX_SIZE-1 bytes, no brace, no
 *  control byte. */
int rk_prefix_ok(const char *prefix);

/** Set up a key space; AW_EINVAL when the prefix fails rk_prefix_ok (NULL
 *  or "" stand for the default "aw"). */
int rk_space_init(rk_space *s, const char *prefix, int tenanted) AW_MUST_CHECK;

/** Percent-encode in[0..len) into out (NUL-terminated); *out_len (may be
 *  NULL) receives its length.  AW_ETOOBIG when out is too small. */
int rk_encode(const void *in, size_t len, char *out, size_t n, size_t *out_len) AW_MUST_CHECK;

/** Decode what rk_encode made into out (NUL-terminated; the bytes may hold
 *  NUL, *out_len says how many).  AW_EPARSE for anything rk_encode never
 *  makes; AW_ETOOBIG when out is too small. */
int rk_decode(const char *in, size_t len, void *out, size_t n, size_t *out_len) AW_MUST_CHECK;

/** 1 when t is a usable tenant: 1..RK_TENANT_MAX bytes, no control byte
 *  (< 0x20, 0x7f), no NUL within len. */
int rk_tenant_ok(const void *t, size_t len);

/** The reference of (tenant, conversation) into out[n]: conv itself when
 *  tenant is NULL or "", else enc(tenant) ':' conv.  AW_EINVAL for an empty
 *  conversation or a tenant failing rk_tenant_ok; AW_ETOOBIG when the
 *  conversation is longer than RK_ID_MAX or out is too small. */
int rk_ref_make(const char *tenant, const char *conv, char *out, size_t n) AW_MUST_CHECK;

/** Split a reference of space s: the tenant, decoded, into tenant[tn] (""
 *  without tenants) and *conv pointing into ref.  AW_EPARSE when a tenanted
 *  reference has no ':', an empty or undecodable or invalid tenant, or an
 *  empty conversation. */
int rk_ref_split(const rk_space *s, const char *ref, char *tenant, size_t tn, const char **conv) AW_MUST_CHECK;

/** The key of kind for the conversation named by ref (see rk_ref_make) into
 *  out[n].  AW_EINVAL: an empty or unreadable reference, a missing or
 *  unexpected arg, a handle name that is not one lower-case word of the
 *  allowed ones, a prefix with a brace; AW_ETOOBIG: an id longer than
 *  RK_ID_MAX or out too small. */
int rk_conv_key(const rk_space *s, const char *ref, rk_kind kind, const char *arg, char *out,
                size_t n) AW_MUST_CHECK;

/** Every key of a conversation, or every key of one kind (rk_conv_match). */
#define RK_MATCH_ALL (-1)

/** The SCAN MATCH pattern of the keys of the conversation named by ref
 *  into out[n] (RK_KEY_MAX is always enough): kind RK_MATCH_ALL, every key
 *  under its hash tag ("<prefix>:{<tag>}:*"); RK_OUTCOME, RK_PROGRESS,
 *  RK_TURN or RK_HIST_PENDING, every key of that kind whatever its id
 *  ("<prefix>:{<tag>}:hist:p:*").  The literal head (prefix and tag) has
 *  Redis' glob characters * ? [ ] and backslash escaped with a backslash:
 *  encoded ids keep them raw (only '%', braces, ':', space and non-printing
 *  bytes are encoded), so the conversation "c*" must not match "c1"'s
 *  keys.  No other conversation's key matches: the tag ends at its '}'.
 *  Errors as rk_conv_key's; AW_EINVAL for a kind that names one key. */
int rk_conv_match(const rk_space *s, const char *ref, int kind, char *out, size_t n) AW_MUST_CHECK;

/** A fleet-wide key into out[n]: <prefix>:<word>:<enc arg>.  Errors as
 *  rk_conv_key's. */
int rk_fleet_key(const rk_space *s, rk_fleet_kind kind, const char *arg, char *out, size_t n) AW_MUST_CHECK;

#endif
