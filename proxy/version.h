/* The shim's version, from the first line of debian/changelog (the Makefile
 * passes it to proxy/version.c alone, so a new version rebuilds one file). */
#ifndef IPERF_SHIM_PROXY_VERSION_H
#define IPERF_SHIM_PROXY_VERSION_H

extern const char shim_version[];

#endif
