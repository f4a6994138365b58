/* TCP facts from the kernel's struct tcp_info: see compat/tcp_info.h. */
#include "compat/tcp_info.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

/* tcpi_state of a listener: the kernel's TCP_LISTEN (include/net/tcp_states.h),
 * which no header this file can include beside <linux/tcp.h> declares. */
#define KERNEL_TCP_LISTEN 10

long tcp_min_rtt_us(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1)
        return -1;
    if (len < offsetof(struct tcp_info, tcpi_min_rtt) + sizeof(ti.tcpi_min_rtt))
        return -1;   /* a kernel that does not know the field */
    if (ti.tcpi_state == KERNEL_TCP_LISTEN || ti.tcpi_min_rtt == ~0u)
        return -1;   /* a listener (fields left 0), or no sample yet (the kernel's
                        "infinite" minimum) */
    return (long)ti.tcpi_min_rtt;
}
