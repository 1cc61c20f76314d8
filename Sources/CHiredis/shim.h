#ifndef DOTPROXY_CHIREDIS_SHIM_H
#define DOTPROXY_CHIREDIS_SHIM_H

/* hiredis (Debian's libhiredis-dev): only its RESP reader and its command formatter are used; the
   connections are SwiftNIO's. */
#include <hiredis/hiredis.h>

#endif
