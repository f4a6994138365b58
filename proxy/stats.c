#include "proxy/stats.h"

#include <string.h>

void stats_test_ended(struct service_stats *s, const struct test_info *t)
{
    if (strcmp(t->transport, "tcp") == 0) {
        s->tcp_bytes[0] += t->bytes[0];
        s->tcp_bytes[1] += t->bytes[1];
    }
    s->roles_repaired += (uint64_t)(t->repaired > 0 ? t->repaired : 0);
    s->recent[s->nrecent++ % STATS_RECENT] = *t;
    for (int i = 0; i < s->nkinds; i++) {
        struct stats_kind *k = &s->kinds[i];
        if (k->ok == t->ok && strcmp(k->protocol, t->protocol) == 0 &&
            strcmp(k->transport, t->transport) == 0 && strcmp(k->mode, t->mode) == 0) {
            k->count++;
            return;
        }
    }
    if (s->nkinds == STATS_KINDS) {
        s->other++;
        return;
    }
    s->kinds[s->nkinds++] = (struct stats_kind){ t->protocol, t->transport, t->mode, t->ok, 1 };
}

const struct test_info *stats_recent(const struct service_stats *s, unsigned i)
{
    if (i >= s->nrecent || i >= STATS_RECENT)
        return NULL;
    return &s->recent[(s->nrecent - 1 - i) % STATS_RECENT];
}
