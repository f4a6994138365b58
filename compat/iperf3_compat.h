/*
 * iperf3 version differences that a relay must know about.
 *
 * Versions come from the "client_version" parameter (sent by clients since
 * 3.1; absent before).  A server never states its version on the control
 * connection, so the server-side predicates below are only usable when the
 * operator configures the upstream version.
 *
 * Every predicate takes (major, minor) as returned by i3_version_parse();
 * versions of another major than 3 are taken as newer (major > 3) or as not
 * iperf3 at all (major < 3): the predicates answer false for those below 3.
 * Facts were checked in esnet/iperf history (file and function named on each).
 */
#ifndef IPERF_SHIM_COMPAT_IPERF3_COMPAT_H
#define IPERF_SHIM_COMPAT_IPERF3_COMPAT_H

#include <stdbool.h>
#include <stdint.h>

/* Parses an iperf3 version string: "3.12", "3.9", "3.21.1", "3.1b3",
 * "3.2rc1", "3.21+" (post-release build), "3.13-mt-beta3".  The text must
 * start with <major>.<minor> (decimal, at most 4 digits each, no sign or
 * blank); what may follow is nothing, or '.', '+', '-' or a letter and then
 * any printable text.  Returns 0 and sets *major, *minor; returns -1 and
 * leaves them untouched on NULL or malformed input. */
int  i3_version_parse(const char *s, int *major, int *minor);

/* Returns true when the version uses the textual UDP connect magic (3.12+,
 * iperf.h UDP_CONNECT_MSG / UDP_CONNECT_REPLY): the client sends the bytes
 * 39 38 37 36 ("9876") and expects 36 37 38 39 ("6789"), and it also accepts
 * the legacy reply.  Before 3.12 (iperf_udp.c) the client sent the int
 * 123456789 and the server replied 987654321, both in host byte order, and
 * the client did not check the reply.
 * Despite the name, 3.12-3.16 write these values in host byte order too: the
 * bytes above are those of a little-endian host; see
 * i3_udp_magic_endian_fixed(). */
bool i3_udp_magic_is_network_order(int major, int minor);

/* Returns true when the UDP connect magic bytes are the same on every host
 * (3.17+, commit "fix endian type of udp connect / reply messages"): a
 * big-endian 3.12-3.16 sends 36 37 38 39 and expects 39 38 37 36. */
bool i3_udp_magic_endian_fixed(int major, int minor);

/* Returns true when that iperf3 ends the control connection with
 * shutdown(SHUT_WR) and then reads until EOF before close() (3.21+,
 * net.c iperf_sync_close_socket, used by iperf_client_end and cleanup_server):
 * a relay must propagate the half-close or that end waits. */
bool i3_closes_ctrl_with_half_close(int major, int minor);

/* Returns the largest parameters JSON that server version accepts
 * (I3_PARAMS_CAP_318 for 3.18+, MAX_PARAMS_JSON_STRING in JSON_read), or 0
 * when it has no cap.  A 3.18+ server refuses longer parameters itself with
 * SERVER_ERROR 114 (IERECVPARAMS), which the client reports clearly ("unable
 * to receive parameters from client"): a relay should let it. */
#define I3_PARAMS_CAP_318 8192u
#define I3_ERR_RECVPARAMS 114   /* IERECVPARAMS: what such a server then sends */
uint32_t i3_server_params_cap(int major, int minor);

/* Returns true when that server sets a flag parameter ("reverse",
 * "bidirectional", "udp", ...) only for the JSON type it expects (3.18+,
 * iperf_cJSON_GetObjectItemType in get_parameters); false when the mere
 * presence of the key sets it, whatever its value (up to 3.17). */
bool i3_server_params_typed(int major, int minor);

/* Returns a short operator text for an iperf3 error code (i_errno) as a
 * server sends it after SERVER_ERROR, e.g. 205 "cannot write to a data
 * stream", 160 "test duration expired"; NULL for a code it does not know.
 * The numbering (iperf_api.h) only grew from 3.12 to 3.21: 34-38, 150-160
 * are new (36 IECNTLKA, 37 max duration exceeded, 160 test duration expired).
 * 3.21 servers also send SERVER_ERROR at the end of a test that completed,
 * after the results, when a data stream thread left an error behind
 * (cleanup_server: typically 205 with EBADF or 206). */
const char *i3_error_text(int32_t code);

#endif
