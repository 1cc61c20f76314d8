#ifndef DOTPROXY_CGNUTLS_SHIM_H
#define DOTPROXY_CGNUTLS_SHIM_H

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>

/* Macros that do not import into Swift, wrapped with a dotproxy_ prefix. */

/* gnutls_free is a macro that also assigns NULL to its argument. */
static inline void dotproxy_gnutls_free(void *pointer) { gnutls_free(pointer); }

/* GNUTLS_CLIENT and friends are both macros and enum cases, which Swift cannot tell apart. */
static inline unsigned int dotproxy_gnutls_client_init_flags(void) {
    return GNUTLS_CLIENT | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL;
}
static inline unsigned int dotproxy_gnutls_server_init_flags(void) {
    return GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL;
}

#endif
