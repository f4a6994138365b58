/*
 * TCP facts the kernel gives and glibc's headers do not describe.
 *
 * glibc's <netinet/tcp.h> declares struct tcp_info as Linux 2.6 had it (it
 * ends at tcpi_total_retrans); the kernel has kept appending fields since,
 * tcpi_min_rtt among them (Linux 4.6).  The kernel copies as much of its
 * struct as the caller's buffer holds and says how much, so a field is
 * known only when the returned length covers it.  This file reads them with
 * the kernel's own <linux/tcp.h>, which cannot be included beside glibc's.
 */
#ifndef IPERF_SHIM_COMPAT_TCP_INFO_H
#define IPERF_SHIM_COMPAT_TCP_INFO_H

/* The lowest round-trip time the kernel has measured on TCP socket fd, in
 * microseconds: over the handshake and every acknowledged segment so far
 * (tcpi_min_rtt).  -1 when not known: not a TCP socket, a kernel before 4.6,
 * or nothing measured yet. */
long tcp_min_rtt_us(int fd);

#endif
