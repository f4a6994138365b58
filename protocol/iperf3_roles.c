#include "protocol/iperf3_roles.h"

static int count_senders(const enum i3_role *r, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s += r[i] == I3_ROLE_SENDER;
    return s;
}

/* Index of the k-th connection of role `want` (unknown counts as receiver). */
static int nth(const enum i3_role *r, int n, enum i3_role want, int k)
{
    for (int i = 0; i < n; i++) {
        enum i3_role role = r[i] == I3_ROLE_SENDER ? I3_ROLE_SENDER : I3_ROLE_RECEIVER;
        if (role == want && k-- == 0)
            return i;
    }
    return -1;
}

enum i3_pairing i3_pair_by_role(const enum i3_role *client, const enum i3_role *server, int P,
                                int pairs[][2])
{
    int n = 2 * P, sc = count_senders(client, n), ss = count_senders(server, n);
    if (sc > P || ss > P)
        return I3_PAIR_BY_ORDER;
    if (sc < P || ss < P)
        return I3_PAIR_WAIT;
    for (int k = 0; k < P; k++) {
        pairs[k][0] = nth(client, n, I3_ROLE_SENDER, k);
        pairs[k][1] = nth(server, n, I3_ROLE_RECEIVER, k);
        pairs[P + k][0] = nth(client, n, I3_ROLE_RECEIVER, k);
        pairs[P + k][1] = nth(server, n, I3_ROLE_SENDER, k);
    }
    return I3_PAIR_BY_ROLE;
}
