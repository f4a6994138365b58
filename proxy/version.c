#include "proxy/version.h"

#ifndef SHIM_VERSION
#error "SHIM_VERSION is set by the Makefile (from debian/changelog)"
#endif

const char shim_version[] = SHIM_VERSION;
