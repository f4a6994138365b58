/*
 * iperf3 --bidir: which client data connection to relay to which server
 * data connection, from the roles learned on the wire.  Pure: roles in,
 * pairs out.
 *
 * The server gives its first P accepted connections the receiver role and
 * the next P the sender role (esnet/iperf #2029); the client's first P are
 * senders.  When a lost handshake packet reorders connections on either
 * leg, arrival order would pair a client sender with a server sender (both
 * send, nobody reads).  A relay learns each connection's role from the
 * traffic (a sender writes at once after TEST_RUNNING, a receiver never
 * writes) and pairs client senders with server receivers and client
 * receivers with server senders, each group in arrival order.
 */
#ifndef IPERF_SHIM_PROTOCOL_IPERF3_ROLES_H
#define IPERF_SHIM_PROTOCOL_IPERF3_ROLES_H

enum i3_role { I3_ROLE_UNKNOWN = 0, I3_ROLE_SENDER, I3_ROLE_RECEIVER };

enum i3_pairing {
    I3_PAIR_WAIT = 0,   /* fewer than P senders known on a side: wait for more traffic */
    I3_PAIR_BY_ROLE,    /* pairs[] holds the 2P pairs by role */
    I3_PAIR_BY_ORDER,   /* more than P senders on a side: roles cannot be trusted, pair
                           connection i with connection i */
};

/* client[i] and server[i]: roles of the 2P data connections of each leg, in
 * arrival (client) and opening (server) order.  Once P senders are known on
 * both legs, unknown roles are receivers and pairs[j] = { client index,
 * server index } for j in 0..2P-1: client senders with server receivers,
 * then client receivers with server senders, each in order.  Returns the
 * verdict; pairs[] is written only for I3_PAIR_BY_ROLE.  P must be >= 1. */
enum i3_pairing i3_pair_by_role(const enum i3_role *client, const enum i3_role *server, int P,
                                int pairs[][2]);

#endif
