/* libFuzzer target for common/wh_config: the libconfig file loader (the
 * wh_cfgscan walk, then libconfig), the WALHOOK_TARGETS list parser and
 * per-setting text values.
 *
 * Input, split at NUL bytes:
 *   part 0          the configuration file (written to a temp file, loaded
 *                   with wh_config_load)
 *   part 1          a WALHOOK_TARGETS-style list for wh_config_set_targets
 *   parts 2..       "path=value" pairs for wh_config_set (a part without '='
 *                   picks a setting by its first byte as index into
 *                   wh_config_table, the rest being the value)
 * Every successful configuration is validated, diffed against the defaults
 * and rendered with wh_config_to_json, which must be valid JSON; every target
 * it holds must pass wh_target_validate (targets are checked as they come).
 * WALHOOK_* variables are removed from the environment at start so runs are
 * reproducible.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wh_buf.h"
#include "wh_config.h"
#include "wh_json.h"
#include "wh_util.h"

extern char **environ;

/* libconfig 1.5 (Debian 12) itself leaks scanner tokens on some syntax
 * errors: its string buffer (strbuf_append) and token strings allocated in
 * libconfig_yylex, which its grammar does not free on error (reproducers:
 * tests/fuzz/crashes/fuzz_config/leak-libconfig-*). Not walhook's leak;
 * suppressed narrowly so the fuzzer can go on. A leak of a parse tree (a
 * missing config_destroy) is still reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

static char g_path[256];

static void teardown(void)
{
    if (g_path[0])
        unlink(g_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* drop WALHOOK_* from the environment */
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; e && *e; e++) {
            if (strncmp(*e, "WALHOOK_", 8) == 0) {
                char name[256];
                size_t n = strcspn(*e, "=");
                if (n >= sizeof name)
                    n = sizeof name - 1;
                memcpy(name, *e, n);
                name[n] = '\0';
                unsetenv(name);
                again = 1;
                break;
            }
        }
    }
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(g_path, sizeof g_path, "%s/walhook-fuzz-config.XXXXXX", base ? base : "/tmp");
    int fd = mkstemp(g_path); /* reserves a unique name; rewritten per input */
    if (fd < 0) {
        perror("fuzz_config: mkstemp");
        abort();
    }
    close(fd);
    unlink(g_path);
    atexit(teardown);
    return 0;
}

static void check_config(wh_config *c)
{
    static wh_config defaults;
    static int have_defaults;
    char err[WH_ERRLEN];
    if (!have_defaults) {
        wh_config_defaults(&defaults);
        have_defaults = 1;
    }
    if (c->ntargets < 0 || c->ntargets > WH_MAX_TARGETS)
        __builtin_trap();
    for (int i = 0; i < c->ntargets; i++)
        if (memchr(c->targets[i].name, 0, WH_NAME_MAX) == NULL ||
            memchr(c->targets[i].url, 0, WH_URL_MAX) == NULL ||
            wh_target_validate(&c->targets[i], err, sizeof err) != WH_OK)
            __builtin_trap();
    (void)wh_config_static_diff(c, &defaults);
    (void)wh_config_static_diff(&defaults, c);
    wh_config copy = *c;
    (void)wh_config_validate(&copy, err, sizeof err);

    wh_buf b;
    wh_buf_init(&b, 0);
    if (wh_config_to_json(c, &b) != WH_OK)
        __builtin_trap();
    wh_json *j = NULL;
    if (wh_json_parse(b.data, b.len, &j, err, sizeof err) != WH_OK)
        __builtin_trap();
    if (j->type != WH_JSON_OBJECT)
        __builtin_trap();
    wh_json_free(j);
    wh_buf_free(&b);
}

/* the next NUL-terminated part of data[*pos..size) as a malloc'd string */
static char *next_part(const uint8_t *data, size_t size, size_t *pos, int *more)
{
    size_t start = *pos;
    const uint8_t *z = memchr(data + start, 0, size - start);
    size_t n = z ? (size_t)(z - (data + start)) : size - start;
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, data + start, n);
    s[n] = '\0';
    *pos = start + n + (z ? 1 : 0);
    *more = z != NULL;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[WH_ERRLEN];
    size_t pos = 0;
    int more = 0;

    /* part 0: the file */
    char *file = next_part(data, size, &pos, &more);
    FILE *f = fopen(g_path, "w");
    if (!f)
        abort();
    fwrite(file, 1, strlen(file), f);
    fclose(f);
    free(file);

    wh_config c;
    memset(&c, 0xA5, sizeof c); /* wh_config_load must initialise everything */
    err[0] = '\0';
    if (wh_config_load(&c, g_path, err, sizeof err) == WH_OK)
        check_config(&c);
    else if (err[0] == '\0')
        __builtin_trap(); /* an error must be explained */
    unlink(g_path);       /* nothing left behind if a later step aborts */
    /* the rest works on defaults, whatever the file was */
    wh_config_defaults(&c);

    if (more) {
        char *list = next_part(data, size, &pos, &more);
        err[0] = '\0';
        if (wh_config_set_targets(&c, list, err, sizeof err) != WH_OK && err[0] == '\0')
            __builtin_trap();
        free(list);
        check_config(&c);
    }
    while (more) {
        char *kv = next_part(data, size, &pos, &more);
        char *eq = strchr(kv, '=');
        const char *path, *value;
        if (eq) {
            *eq = '\0';
            path = kv;
            value = eq + 1;
        } else if (kv[0] && wh_config_table_len > 0) {
            path = wh_config_table[(unsigned char)kv[0] % wh_config_table_len].path;
            value = kv + 1;
        } else {
            free(kv);
            continue;
        }
        err[0] = '\0';
        if (wh_config_set(&c, path, value, err, sizeof err) != WH_OK && err[0] == '\0')
            __builtin_trap();
        free(kv);
    }
    check_config(&c);
    return 0;
}
