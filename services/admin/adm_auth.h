/* adm_auth: bearer tokens of the admin API and their scopes.
 *
 * Tokens come from admin.read_token and admin.admin_token (file or
 * WALHOOK_ADMIN_READ_TOKEN / WALHOOK_ADMIN_ADMIN_TOKEN) and from the tokens
 * file (admin.tokens_file, default <data_dir>/admin.token): one token a
 * line, "TOKEN" or "admin:TOKEN" for the admin scope, "read:TOKEN" for the
 * read scope; '#' starts a comment.
 *
 * Safe default: when no token is configured anywhere and the default tokens
 * file does not exist, a random admin token is generated into
 * <data_dir>/admin.token (mode 0600) and its path (never the token) is
 * logged. The API is never open without a token.
 *
 * Scopes: GET/HEAD need read or admin; every other method needs admin.
 * /livez, /readyz, /metrics and the status page / are open while
 * admin.open_probes is true (the default). Comparison is constant-time.
 * An adm_auth is immutable after construction (shared by every thread).
 */
#ifndef ADM_AUTH_H
#define ADM_AUTH_H

#include <stddef.h>
#include "wh_config.h"

enum { ADM_SCOPE_NONE = 0, ADM_SCOPE_READ = 1, ADM_SCOPE_ADMIN = 2 };
#define ADM_TOKEN_MIN 16 /* shortest configured token accepted */

typedef struct adm_auth adm_auth;

/* Loads the tokens of cfg (see above); may create <data_dir>/admin.token. */
int adm_auth_new(adm_auth **out, const wh_config *cfg, char *err, size_t errlen);
/* For tests: exactly these tokens (either may be NULL). */
int adm_auth_from_tokens(adm_auth **out, const char *read_token, const char *admin_token,
                         int open_probes, char *err, size_t errlen);
void adm_auth_free(adm_auth *a);

/* The scope granted by an Authorization header value ("Bearer TOKEN"; NULL
 * when absent): ADM_SCOPE_NONE when missing or unknown. */
int adm_auth_scope(const adm_auth *a, const char *authorization);
/* Whether path is a probe that answers without a token. */
int adm_auth_is_open(const adm_auth *a, const char *path);
/* Constant-time equality of two NUL-terminated strings (time depends only
 * on the length of b). */
int adm_auth_equal(const char *a, const char *b);
/* Reads the admin token of a tokens file (the first "TOKEN" or
 * "admin:TOKEN" line) into out; for the walhook command. */
int adm_auth_read_admin_token(const char *path, char *out, size_t len, char *err, size_t errlen);

#endif
