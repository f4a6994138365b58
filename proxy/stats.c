#include "proxy/stats.h"

#include <string.h>

void stats_test_ended(struct service_stats *s, const char *protocol, const char *transport,
                      const char *mode, bool ok, uint64_t c2s, uint64_t s2c)
{
    s->tcp_bytes[0] += c2s;
    s->tcp_bytes[1] += s2c;
    for (int i = 0; i < s->nkinds; i++) {
        struct stats_kind *k = &s->kinds[i];
        if (k->ok == ok && strcmp(k->protocol, protocol) == 0 &&
            strcmp(k->transport, transport) == 0 && strcmp(k->mode, mode) == 0) {
            k->count++;
            return;
        }
    }
    if (s->nkinds == STATS_KINDS) {
        s->other++;
        return;
    }
    s->kinds[s->nkinds++] = (struct stats_kind){ protocol, transport, mode, ok, 1 };
}
