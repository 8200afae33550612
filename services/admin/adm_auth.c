/* adm_auth: bearer tokens, scopes, the generated default token. */
#include "adm_auth.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wh_util.h"

#define ADM_MAX_TOKENS 32
#define ADM_TOKEN_MAX 256

typedef struct adm_token {
    char value[ADM_TOKEN_MAX];
    int scope;
} adm_token;

struct adm_auth {
    adm_token tokens[ADM_MAX_TOKENS];
    int ntokens;
    int open_probes;
};

int adm_auth_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    volatile unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < lb; i++) {
        unsigned char ca = i < la ? (unsigned char)a[i] : 0;
        diff |= (unsigned char)(ca ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

static int add_token(adm_auth *a, const char *value, int scope, const char *what, char *err,
                     size_t errlen)
{
    size_t n = strlen(value);
    if (n < ADM_TOKEN_MIN)
        return wh_seterr(err, errlen, "%s: a token must have at least %d characters", what,
                         ADM_TOKEN_MIN);
    for (const char *p = value; *p; p++)
        if (!isgraph((unsigned char)*p))
            return wh_seterr(err, errlen, "%s: a token must be printable, without spaces", what);
    if (a->ntokens >= ADM_MAX_TOKENS)
        return wh_seterr(err, errlen, "%s: more than %d tokens", what, ADM_MAX_TOKENS);
    if (wh_strlcpy(a->tokens[a->ntokens].value, value, ADM_TOKEN_MAX) != WH_OK)
        return wh_seterr(err, errlen, "%s: token longer than %d characters", what,
                         ADM_TOKEN_MAX - 1);
    a->tokens[a->ntokens].scope = scope;
    a->ntokens++;
    return WH_OK;
}

/* Parses one tokens-file line in place: returns the scope and sets *tok, or
 * 0 for a blank/comment line. */
static int parse_line(char *line, char **tok)
{
    char *h = strchr(line, '#');
    if (h)
        *h = '\0';
    while (isspace((unsigned char)*line))
        line++;
    size_t n = strlen(line);
    while (n > 0 && isspace((unsigned char)line[n - 1]))
        line[--n] = '\0';
    if (n == 0)
        return 0;
    if (strncmp(line, "read:", 5) == 0) {
        *tok = line + 5;
        return ADM_SCOPE_READ;
    }
    if (strncmp(line, "admin:", 6) == 0) {
        *tok = line + 6;
        return ADM_SCOPE_ADMIN;
    }
    *tok = line;
    return ADM_SCOPE_ADMIN;
}

static int load_file(adm_auth *a, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return wh_seterr(err, errlen, "admin.tokens_file: cannot read %s: %s", path,
                         strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0077))
        wh_warn("admin.tokens_file %s is readable by group or others (chmod 600)", path);
    char line[1024];
    int lineno = 0, rc = WH_OK;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *tok = NULL;
        int scope = parse_line(line, &tok);
        if (scope == 0)
            continue;
        char what[WH_PATH_MAX + 64];
        snprintf(what, sizeof(what), "admin.tokens_file %s line %d", path, lineno);
        if ((rc = add_token(a, tok, scope, what, err, errlen)) != WH_OK)
            break;
    }
    fclose(f);
    return rc;
}

static int generate(const char *path, char *err, size_t errlen)
{
    unsigned char rnd[24];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
        if (fd >= 0)
            close(fd);
        return wh_seterr(err, errlen, "cannot read /dev/urandom for the admin token");
    }
    close(fd);
    char hex[2 * sizeof(rnd) + 2];
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    hex[2 * sizeof(rnd)] = '\n';
    hex[2 * sizeof(rnd) + 1] = '\0';
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return WH_OK; /* another process made it first: use that one */
        return wh_seterr(err, errlen, "cannot create the admin token file %s: %s", path,
                         strerror(errno));
    }
    size_t n = strlen(hex);
    int ok = write(fd, hex, n) == (ssize_t)n && fsync(fd) == 0;
    close(fd);
    if (!ok)
        return wh_seterr(err, errlen, "cannot write the admin token file %s", path);
    wh_info("no admin token configured: generated one into %s (mode 0600)", path);
    return WH_OK;
}

int adm_auth_new(adm_auth **out, const wh_config *cfg, char *err, size_t errlen)
{
    adm_auth *a = calloc(1, sizeof(*a));
    if (!a)
        return wh_seterr(err, errlen, "out of memory");
    a->open_probes = cfg->admin_open_probes;
    if (cfg->admin_read_token[0] && add_token(a, cfg->admin_read_token, ADM_SCOPE_READ,
                                              "setting 'admin.read_token'", err, errlen) != WH_OK)
        goto error;
    if (cfg->admin_admin_token[0] && add_token(a, cfg->admin_admin_token, ADM_SCOPE_ADMIN,
                                               "setting 'admin.admin_token'", err, errlen) != WH_OK)
        goto error;
    if (cfg->admin_tokens_file[0]) {
        if (load_file(a, cfg->admin_tokens_file, err, errlen) != WH_OK)
            goto error;
    } else {
        char path[WH_PATH_MAX + 16];
        snprintf(path, sizeof(path), "%s/admin.token", cfg->data_dir);
        if (access(path, F_OK) == 0) {
            if (load_file(a, path, err, errlen) != WH_OK)
                goto error;
        } else if (a->ntokens == 0) {
            if (wh_mkdirs(cfg->data_dir, 0700, err, errlen) != WH_OK ||
                generate(path, err, errlen) != WH_OK || load_file(a, path, err, errlen) != WH_OK)
                goto error;
        }
    }
    if (a->ntokens == 0) {
        wh_seterr(err, errlen,
                  "admin: no token configured (admin.admin_token, admin.read_token "
                  "or admin.tokens_file)");
        goto error;
    }
    *out = a;
    return WH_OK;
error:
    free(a);
    return WH_ERR;
}

int adm_auth_from_tokens(adm_auth **out, const char *read_token, const char *admin_token,
                         int open_probes, char *err, size_t errlen)
{
    adm_auth *a = calloc(1, sizeof(*a));
    if (!a)
        return wh_seterr(err, errlen, "out of memory");
    a->open_probes = open_probes;
    if ((read_token && add_token(a, read_token, ADM_SCOPE_READ, "read token", err, errlen)) ||
        (admin_token && add_token(a, admin_token, ADM_SCOPE_ADMIN, "admin token", err, errlen))) {
        free(a);
        return WH_ERR;
    }
    *out = a;
    return WH_OK;
}

void adm_auth_free(adm_auth *a)
{
    if (a)
        explicit_bzero(a, sizeof(*a));
    free(a);
}

int adm_auth_scope(const adm_auth *a, const char *authorization)
{
    if (!a || !authorization)
        return ADM_SCOPE_NONE;
    const char *p = authorization;
    while (*p == ' ')
        p++;
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return ADM_SCOPE_NONE;
    p += 7;
    while (*p == ' ' || *p == '\t')
        p++;
    char tok[ADM_TOKEN_MAX];
    size_t n = strcspn(p, " \t\r\n");
    if (n == 0 || n >= sizeof(tok))
        return ADM_SCOPE_NONE;
    memcpy(tok, p, n);
    tok[n] = '\0';
    int scope = ADM_SCOPE_NONE;
    for (int i = 0; i < a->ntokens; i++) /* no early exit: same work for every token */
        if (adm_auth_equal(tok, a->tokens[i].value) && a->tokens[i].scope > scope)
            scope = a->tokens[i].scope;
    explicit_bzero(tok, sizeof(tok));
    return scope;
}

int adm_auth_is_open(const adm_auth *a, const char *path)
{
    if (!a || !a->open_probes)
        return 0;
    return strcmp(path, "/livez") == 0 || strcmp(path, "/readyz") == 0 ||
           strcmp(path, "/metrics") == 0 || strcmp(path, "/") == 0;
}

int adm_auth_read_admin_token(const char *path, char *out, size_t len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return wh_seterr(err, errlen, "cannot read %s: %s", path, strerror(errno));
    char line[1024];
    int rc = wh_seterr(err, errlen, "%s: no admin token in it", path);
    while (fgets(line, sizeof(line), f)) {
        char *tok = NULL;
        if (parse_line(line, &tok) == ADM_SCOPE_ADMIN) {
            rc = wh_strlcpy(out, tok, len) == WH_OK
                     ? WH_OK
                     : wh_seterr(err, errlen, "%s: token too long", path);
            break;
        }
    }
    explicit_bzero(line, sizeof(line));
    fclose(f);
    return rc;
}
