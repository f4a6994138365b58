/*
 * iperf3 results JSON: reading the per-stream entries, renumbering their
 * ids, and pairing entries with connections by byte counts.  Pure functions
 * over text; no sockets, no libev.  docs/results-pairing.md explains why.
 *
 * During EXCHANGE_RESULTS the client sends its results JSON, then the server
 * sends its own (iperf_api.c send_results / get_results, the same from 3.0
 * to 3.21 and master):
 *
 *   {"cpu_util_total":..,"cpu_util_user":..,"cpu_util_system":..,
 *    "sender_has_retransmits":..,["congestion_used":..,]
 *    ["server_output_text":".." | "server_output_json":{..},]
 *    "streams":[{"id":1,"bytes":..,"retransmits":..,"jitter":..,"errors":..,
 *                ["omitted_errors":..,]"packets":..,["omitted_packets":..,]
 *                "start_time":..,"end_time":..}, ...]}
 *
 * One entry per stream of the sender, in its creation (client) or accept
 * (server) order; ids are 1, 3, 4, 5, ... on each side.  The receiver looks
 * each entry up by "id" among its own streams (cJSON_GetObjectItem: first
 * key equal to "id" ignoring case) and takes its "bytes" as the peer's count
 * for that stream.  No release writes a "sender" flag in these entries
 * (checked in 3.12 to 3.21 and master).
 *
 * Reading is strict: the text must be one JSON object (RFC 8259 grammar,
 * nesting at most I3_RESULTS_MAX_DEPTH, no NUL byte, nothing but white space
 * after it) that cJSON parses to the same ids and byte counts; "streams" an
 * array of at most I3_RESULTS_MAX_STREAMS objects, each with exactly one
 * "id" (an integer 0..INT32_MAX, unique in the array) and one "bytes" (a
 * number 0..2^64-1).  Anything else is refused with a reason: a caller then
 * forwards the original bytes unchanged.
 *
 * Every function writes a one-line reason into why[whylen] on failure
 * (why may be NULL) and returns -1.
 */
#ifndef IPERF_SHIM_PROTOCOL_IPERF3_RESULTS_H
#define IPERF_SHIM_PROTOCOL_IPERF3_RESULTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define I3_RESULTS_MAX_STREAMS 256  /* 2 x I3_MAX_PARALLEL (--bidir -P 128) */
#define I3_RESULTS_MAX_DEPTH   32   /* nesting of arrays/objects; 3.12 -J output uses 6 */
#define I3_MATCH_MARGIN        4    /* i3_match_by_bytes: how much farther every other
                                       candidate must be than the worst chosen pair */

/* One stream entry of a results JSON, in the order listed. */
struct i3_rstream {
    int64_t  id;          /* "id": the sender's stream id (0..INT32_MAX) */
    uint64_t bytes;       /* "bytes": sent (a sending stream) or received, as counted by
                             the peer that wrote the JSON; rounded when written as a
                             fraction or exponent */
    bool     has_sender;  /* the entry carries a boolean "sender" (no release does) */
    bool     sender;      /* its value when has_sender */
};

/* Parses the "streams" array of a results JSON (client's or server's) into
 * out[0..max-1].  Returns the number of entries (0..max), or -1 when the text
 * is malformed or hostile or has more than max entries. */
int i3_results_streams(const char *json, size_t len, struct i3_rstream *out, int max,
                       char *why, size_t whylen);

/* Rewrites the "id" value of every stream entry: the entry with id from[k]
 * gets id to[k].  from[0..n-1] must be exactly the ids present (n equals the
 * number of entries) and to[] a permutation of from[].  Only the digits of
 * those id values change; every other byte of the document (key order,
 * number spelling, white space, unknown keys) is copied as it was.
 * Returns 0 with a malloc'd copy in *out (*outlen bytes, no NUL among them,
 * followed by a terminating NUL not counted in *outlen; the caller frames it
 * with the 4-byte length and frees it), or -1 with *out NULL: then forward
 * the original unchanged. */
int i3_results_rewrite_ids(const char *json, size_t len, const int64_t *from,
                           const int64_t *to, int n, char **out, size_t *outlen,
                           char *why, size_t whylen);

/* Pairs n stream entries (entry_bytes[i]: bytes of entry i as the peer
 * counted them) with n connections (conn_bytes[j]: bytes the caller counted
 * on connection j): map[i] = connection of entry i.  Deterministic.
 * Returns 0 only when the pairing is certain by this rule (n == 1 always is):
 *  - no two entries, and no two connections, have the same count;
 *  - each entry goes to its nearest connection (|entry - conn| smallest),
 *    and no connection is the nearest of two entries;
 *  - with D the largest |entry - conn| of the chosen pairs, every other
 *    connection is farther than I3_MATCH_MARGIN * D from each entry
 *    (D == 0, equal counts everywhere, only needs the counts distinct).
 * So any other pairing would have to put one entry more than
 * I3_MATCH_MARGIN times farther from its connection than the worst pair of
 * this one.  Else returns -1 ("two stream entries with 1048576 bytes each")
 * and map is left unspecified. */
int i3_match_by_bytes(const uint64_t *entry_bytes, const uint64_t *conn_bytes, int n,
                      int *map, char *why, size_t whylen);

#endif
