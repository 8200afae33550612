/* Unit tests: configuration table, file errors, environment, validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <libconfig.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wh_buf.h"
#include "wh_cfgscan.h"
#include "wh_config.h"
#include "wh_dsn.h"
#include "wh_pgerr.h"
#include "wh_util.h"

static char path[64];

/* Spies on libconfig's parser entry points (this program's definitions win
 * over libconfig's at link time) to see how often a whole file reaches it. */
static int libconfig_parses;

int config_read_file(config_t *config, const char *filename)
{
    int (*real)(config_t *, const char *) =
        (int (*)(config_t *, const char *))dlsym(RTLD_NEXT, "config_read_file");
    libconfig_parses++;
    return real(config, filename);
}

int config_read_string(config_t *config, const char *str)
{
    int (*real)(config_t *, const char *) =
        (int (*)(config_t *, const char *))dlsym(RTLD_NEXT, "config_read_string");
    libconfig_parses++;
    return real(config, str);
}

static const char *write_conf(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/wh_cfg_test_%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int load_text(wh_config *c, const char *text, char *err, size_t errlen)
{
    int rc = wh_config_load(c, write_conf(text), err, errlen);
    unlink(path);
    return rc;
}

static void test_defaults(void **state)
{
    wh_config c;
    char err[WH_ERRLEN];
    assert_int_equal(wh_config_load(&c, NULL, err, sizeof(err)), WH_OK);
    assert_string_equal(c.tenant, "default");
    assert_true(c.flush_bytes == 4 * 1024 * 1024);
    assert_true(c.flush_age_us == 500);
    assert_string_equal(c.store_endpoint, "ipc://./var/store.sock");
    assert_string_equal(c.cpu_scheduling, "auto");
    assert_string_equal(c.cpu_affinity, "");
}

static void test_full_file(void **state)
{
    wh_config c;
    char err[WH_ERRLEN];
    int rc =
        load_text(&c,
                  "tenant = \"shop\";\n"
                  "data_dir = \"/tmp/whx\";\n"
                  "source = { dsn = \"postgresql://u@127.0.0.1:5432/db\"; create_slot = false; };\n"
                  "ingestor = { flush_bytes = 1048576; flush_age_us = 1000L; };\n"
                  "targets = ( { name = \"a\"; url = \"http://127.0.0.1:9000/x\"; },\n"
                  "            { url = \"https://example.invalid/y\"; secret = "
                  "\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"; } );\n",
                  err, sizeof(err));
    assert_int_equal(rc, WH_OK);
    assert_string_equal(c.tenant, "shop");
    assert_int_equal(c.create_slot, 0);
    assert_true(c.flush_bytes == 1048576);
    assert_true(c.flush_age_us == 1000);
    assert_int_equal(c.ntargets, 2);
    assert_string_equal(c.targets[0].name, "a");
    assert_string_equal(c.targets[1].name, "t1");
    assert_string_equal(c.targets[1].secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_string_equal(c.store_endpoint, "ipc:///tmp/whx/store.sock");
}

static void expect_error(const char *text, const char *needle)
{
    wh_config c;
    char err[WH_ERRLEN] = "";
    assert_int_equal(load_text(&c, text, err, sizeof(err)), WH_ERR);
    if (strstr(err, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_errors(void **state)
{
    expect_error("bogus = 1;\n", "unknown setting 'bogus'");
    expect_error("source = { dns = \"x\"; };\n", "unknown setting 'source.dns'");
    expect_error("ingestor = { flush_bytes = \"big\"; };\n",
                 "'ingestor.flush_bytes' (line 1): expected an integer");
    expect_error("tenant = 5;\n", "'tenant' (line 1): expected a string");
    expect_error("source = { create_slot = 1; };\n", "expected true or false");
    expect_error("ingestor = { flush_bytes = 1; };\n", "out of range");
    expect_error("source = { dsn = \"postgresql://u@h:notaport/db\"; };\n", "source.dsn");
    expect_error("source = { dsn = \"host=x port=99999\"; };\n", "invalid port");
    expect_error("source = { dsn = \"host=x bogus=1\"; };\n", "source.dsn");
    expect_error("targets = ( { url = \"ftp://x\"; } );\n", "http://");
    expect_error("targets = ( { url = \"http://x\"; colour = \"red\"; } );\n", "targets[0].colour");
    expect_error("tenant = \"a\"\n x", "line");
    expect_error("log_level = \"loud\";\n", "log_level");
    expect_error("cpu_scheduling = \"fifo\";\n",
                 "setting 'cpu_scheduling': 'fifo' is not auto, batch or normal");
    expect_error("cpu_affinity = \"0-x\";\n",
                 "setting 'cpu_affinity': '0-x': item 1: a range is \"a-b\" with a <= b < 1024 "
                 "(\"0-3\")");
    expect_error("cpu_affinity = 1;\n", "cpu_affinity");
    expect_error("source = { slot = \"Bad-Slot\"; };\n", "source.slot");
    expect_error("source = { skip_origins = \"a,\"; };\n",
                 "setting 'source.skip_origins': item 2 is empty");
    expect_error("source = { skip_origins = \" , b\"; };\n",
                 "setting 'source.skip_origins': item 1 is empty");
    expect_error("source = { skip_origins = \"a\\nb\"; };\n",
                 "setting 'source.skip_origins': byte 1 is a control character");
    expect_error("dispatcher = { advertise = \"http://h:7003\"; };\n",
                 "setting 'dispatcher.advertise': 'http://h:7003' must start with ipc://");
    expect_error("dispatcher = { advertise = \"tcp://bad host:7003\"; };\n",
                 "setting 'dispatcher.advertise': 'tcp://bad host:7003' may contain only "
                 "printable ASCII without spaces");

    wh_config c;
    char err[WH_ERRLEN];
    assert_int_equal(wh_config_load(&c, "/nonexistent/walhook.conf", err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "/nonexistent/walhook.conf"));
}

/* Plain tcp:// on an address other than the loopback has no authentication:
 * refused by name for every IPC endpoint unless ipc.allow_plaintext_tcp,
 * which then lists them for the daemons' start-up warning. */
static void test_plaintext_tcp(void **state)
{
    (void)state;
    const char *advice = "use tls+tcp:// (mutual TLS, ipc.tls_*) or ipc:// on a volume the "
                         "daemons share, or set ipc.allow_plaintext_tcp = true";
    struct {
        const char *text, *needle;
    } bad[] = {
        {"store = { endpoint = \"tcp://0.0.0.0:7001\"; };\n",
         "setting 'store.endpoint': 'tcp://0.0.0.0:7001' is plain tcp:// beyond the loopback "
         "(no authentication, no encryption: whoever connects reads every secret of the "
         "runtime state and rewrites it)"},
        {"store = { endpoint = \"tcp://10.1.2.3:7001\"; };\n",
         "setting 'store.endpoint': 'tcp://10.1.2.3:7001' is plain tcp:// beyond the loopback"},
        {"store = { endpoint = \"tcp://store:7001\"; };\n",
         "setting 'store.endpoint': 'tcp://store:7001' is plain tcp://"},
        {"store = { endpoint = \"tcp://[::]:7001\"; };\n", "setting 'store.endpoint'"},
        {"store = { endpoint = \"tcp://*:7001\"; };\n", "setting 'store.endpoint'"},
        {"store = { endpoint = \"tcp://127.0.0.1:7001\"; notify_endpoint = "
         "\"tcp://0.0.0.0:7004\"; };\n",
         "setting 'store.notify_endpoint': 'tcp://0.0.0.0:7004' is plain tcp://"},
        {"ingestor = { control = \"tcp://0.0.0.0:7002\"; };\n",
         "setting 'ingestor.control': 'tcp://0.0.0.0:7002' is plain tcp://"},
        {"dispatcher = { control = \"tcp://[fd00::5]:7003\"; };\n",
         "setting 'dispatcher.control': 'tcp://[fd00::5]:7003' is plain tcp://"},
        {"dispatcher = { advertise = \"tcp://dispatcher-1:7003\"; };\n",
         "setting 'dispatcher.advertise': 'tcp://dispatcher-1:7003' is plain tcp://"},
        {"ipc = { allow_plaintext_tcp = false; };\n"
         "store = { endpoint = \"tcp://0.0.0.0:7001\"; };\n",
         "setting 'store.endpoint'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_error(bad[i].text, bad[i].needle);
        expect_error(bad[i].text, advice);
    }

    wh_config c;
    char err[WH_ERRLEN] = "", list[1024];
    /* the loopback, ipc:// and tls+tcp:// anywhere stay allowed */
    assert_int_equal(load_text(&c,
                               "store = { endpoint = \"tcp://127.0.0.1:7001\"; notify_endpoint = "
                               "\"tcp://[::1]:7004\"; };\n"
                               "ingestor = { control = \"tcp://localhost:7002\"; };\n"
                               "dispatcher = { control = \"ipc:///run/walhook/d.sock\"; };\n",
                               err, sizeof(err)),
                     WH_OK);
    assert_int_equal(wh_config_plaintext_endpoints(&c, 0, list, sizeof(list)), 0);
    assert_string_equal(list, "");
    assert_int_equal(wh_config_plaintext_endpoints(&c, 1, list, sizeof(list)), 3);
    assert_string_equal(list, "store.endpoint tcp://127.0.0.1:7001, store.notify_endpoint "
                              "tcp://[::1]:7004, ingestor.control tcp://localhost:7002");
    assert_int_equal(load_text(&c,
                               "ipc = { tls_cert = \"/c.pem\"; tls_key = \"/k.pem\"; tls_ca = "
                               "\"/ca.pem\"; };\n"
                               "store = { endpoint = \"tls+tcp://0.0.0.0:7001\"; };\n",
                               err, sizeof(err)),
                     WH_OK);

    /* the opt-in: accepted, and listed for the start-up warning */
    assert_int_equal(load_text(&c,
                               "ipc = { allow_plaintext_tcp = true; };\n"
                               "store = { endpoint = \"tcp://0.0.0.0:7001\"; notify_endpoint = "
                               "\"tcp://127.0.0.1:7004\"; };\n"
                               "dispatcher = { control = \"tcp://dispatcher:7003\"; };\n",
                               err, sizeof(err)),
                     WH_OK);
    assert_int_equal(c.ipc_allow_plaintext_tcp, 1);
    assert_int_equal(wh_config_plaintext_endpoints(&c, 0, list, sizeof(list)), 2);
    assert_string_equal(
        list, "store.endpoint tcp://0.0.0.0:7001, dispatcher.control tcp://dispatcher:7003");
    assert_int_equal(wh_config_plaintext_endpoints(&c, 1, list, sizeof(list)), 1);
    assert_string_equal(list, "store.notify_endpoint tcp://127.0.0.1:7004");
    /* a short buffer is cut, never overrun; the count stays */
    char small[20];
    assert_int_equal(wh_config_plaintext_endpoints(&c, 0, small, sizeof(small)), 2);
    assert_string_equal(small, "store.endpoint tcp:");
    /* the environment's name of the setting */
    setenv("WALHOOK_IPC_ALLOW_PLAINTEXT_TCP", "true", 1);
    setenv("WALHOOK_STORE_ENDPOINT", "tcp://0.0.0.0:7001", 1);
    assert_int_equal(wh_config_load(&c, NULL, err, sizeof(err)), WH_OK);
    unsetenv("WALHOOK_IPC_ALLOW_PLAINTEXT_TCP");
    assert_int_equal(wh_config_load(&c, NULL, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "setting 'store.endpoint'"));
    unsetenv("WALHOOK_STORE_ENDPOINT");
}

/* source.skip_origins: the list's syntax and which names it matches. */
static void test_skip_origins(void **state)
{
    char err[WH_ERRLEN];
    assert_int_equal(wh_origins_check("", err, sizeof(err)), WH_OK);
    assert_int_equal(wh_origins_check("  ", err, sizeof(err)), WH_OK);
    assert_int_equal(wh_origins_check("pg_16384", err, sizeof(err)), WH_OK);
    assert_int_equal(wh_origins_check(" peer_a , peer b,* ", err, sizeof(err)), WH_OK);
    assert_int_equal(wh_origins_check("a,,b", err, sizeof(err)), WH_ERR);
    assert_string_equal(err, "item 2 is empty (a list of origin names separated by ',', or "
                             "\"*\" for every origin)");
    char longname[WH_ORIGIN_NAME_MAX + 8];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(wh_origins_check(longname, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "item 1 is longer than 512 bytes"));
    longname[WH_ORIGIN_NAME_MAX] = '\0';
    assert_int_equal(wh_origins_check(longname, err, sizeof(err)), WH_OK);

    assert_int_equal(wh_origins_match("", "peer"), 0);
    assert_int_equal(wh_origins_match("peer", "peer"), 1);
    assert_int_equal(wh_origins_match("peer", "pee"), 0);
    assert_int_equal(wh_origins_match("peer", "peer2"), 0);
    assert_int_equal(wh_origins_match("a, peer b ,c", "peer b"), 1);
    assert_int_equal(wh_origins_match("a, peer b ,c", "c"), 1);
    assert_int_equal(wh_origins_match("a, peer b ,c", "b"), 0);
    assert_int_equal(wh_origins_match("*", "anything"), 1);
    assert_int_equal(wh_origins_match("x,*", "y"), 1);
    assert_int_equal(wh_origins_match("Peer", "peer"), 0); /* names are case-sensitive */

    /* in the file, in the environment; a runtime setting */
    wh_config c;
    assert_int_equal(
        load_text(&c, "source = { skip_origins = \"pg_1, pg_2\"; };\n", err, sizeof(err)), WH_OK);
    assert_string_equal(c.skip_origins, "pg_1, pg_2");
    assert_true(wh_config_find("source.skip_origins")->flags & WH_CF_RUNTIME);
    setenv("WALHOOK_SOURCE_SKIP_ORIGINS", "a,", 1);
    assert_int_equal(wh_config_load(&c, NULL, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "setting 'source.skip_origins': item 2 is empty"));
    unsetenv("WALHOOK_SOURCE_SKIP_ORIGINS");
}

static void test_env_overrides(void **state)
{
    wh_config c;
    char err[WH_ERRLEN];
    setenv("WALHOOK_INGESTOR_FLUSH_BYTES", "2M", 1);
    setenv("WALHOOK_TARGETS", "http://127.0.0.1:1/a, b=http://127.0.0.1:2/b", 1);
    setenv("WALHOOK_SOURCE_CREATE_SLOT", "off", 1);
    int rc = load_text(&c, "ingestor = { flush_bytes = 1048576; };\n", err, sizeof(err));
    unsetenv("WALHOOK_INGESTOR_FLUSH_BYTES");
    unsetenv("WALHOOK_TARGETS");
    unsetenv("WALHOOK_SOURCE_CREATE_SLOT");
    assert_int_equal(rc, WH_OK);
    assert_true(c.flush_bytes == 2 * 1024 * 1024);
    assert_int_equal(c.create_slot, 0);
    assert_int_equal(c.ntargets, 2);
    assert_string_equal(c.targets[0].name, "t0");
    assert_string_equal(c.targets[1].name, "b");
    assert_string_equal(c.targets[1].url, "http://127.0.0.1:2/b");

    setenv("WALHOOK_STORE_WORKERS", "many", 1);
    rc = wh_config_load(&c, NULL, err, sizeof(err));
    unsetenv("WALHOOK_STORE_WORKERS");
    assert_int_equal(rc, WH_ERR);
    assert_non_null(strstr(err, "WALHOOK_STORE_WORKERS"));
}

static void test_static_diff_and_json(void **state)
{
    wh_config a, b;
    char err[WH_ERRLEN];
    assert_int_equal(wh_config_load(&a, NULL, err, sizeof(err)), WH_OK);
    b = a;
    b.flush_bytes = 12345;
    assert_null(wh_config_static_diff(&a, &b));
    wh_strlcpy(b.slot, "other", sizeof(b.slot));
    assert_string_equal(wh_config_static_diff(&a, &b), "source.slot");

    wh_strlcpy(a.source_dsn, "postgresql://bob:hunter2@db:5432/x", sizeof(a.source_dsn));
    wh_buf j;
    wh_buf_init(&j, 0);
    assert_int_equal(wh_config_to_json(&a, &j), WH_OK);
    wh_buf_cstr(&j);
    assert_null(strstr(j.data, "hunter2"));
    assert_non_null(strstr(j.data, "\"source.dsn\":\"postgresql://bob:****@db:5432/x\""));
    wh_buf_free(&j);
}

static void test_dsn_syntax(void **state)
{
    char err[WH_ERRLEN];
    const char *good[] = {
        "postgresql://u@127.0.0.1:5432/db",
        "postgres://u:p%40ss@h1:5432,h2:5433/db?sslmode=require&application_name=x",
        "postgresql://[::1]:5432/db",
        "postgresql:///db?host=/tmp",
        "host=127.0.0.1 port=5432 dbname=x user=u",
        "host='a b' password='it\\'s' port = 5432",
        "",
        NULL};
    for (int i = 0; good[i]; i++)
        if (wh_dsn_check(good[i], err, sizeof(err)) != WH_OK)
            fail_msg("'%s' rejected: %s", good[i], err);
    struct {
        const char *dsn, *needle;
    } bad[] = {
        {"postgresql://u@h:notaport/db", "port"},
        {"postgresql://u@h:0/db", "port"},
        {"postgresql://u@h:70000/db", "port"},
        {"postgresql://h/db?colour=red", "unknown URI parameter at offset 18"},
        {"postgresql://h/db?sslmode", "no '='"},
        {"mysql://h/db", "postgresql://"},
        {"host=x bogus=1", "unknown keyword at offset 7"},
        {"host=x port=99999", "port"},
        {"host", "missing '='"},
        {"host='x", "unterminated"},
        {"postgresql://[::1/db", "IPv6"},
        {"postgresql://u:p@[]:5432/db", "empty IPv6"},
        {"postgresql://u:p@[::1]x:5432/db", "unexpected character at offset 22"},
        {"postgresql://u:p%zzq@h/db", "percent-encoding at offset 16"},
        {"postgresql://u:p%00q@h/db", "%00 at offset 16"},
        {"postgresql://h/db?sslmode=a=b", "second '='"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (wh_dsn_check(bad[i].dsn, err, sizeof(err)) != WH_ERR)
            fail_msg("'%s' accepted", bad[i].dsn);
        if (strstr(err, bad[i].needle) == NULL)
            fail_msg("'%s': error '%s' does not mention '%s'", bad[i].dsn, err, bad[i].needle);
    }
}

/* Messages libpq gives about these DSNs quote them; what goes out never
 * holds the password, as written or decoded. */
static void test_dsn_scrub(void **state)
{
    struct {
        const char *dsn, *msg, *out;
    } cases[] = {
        {"postgresql://walhook:PW1@[]:5432/db",
         "IPv6 host address may not be empty in URI: \"postgresql://walhook:PW1@[]:5432/db\"\n",
         "IPv6 host address may not be empty in URI: \"postgresql://walhook:****@[]:5432/db\"\n"},
        {"postgresql://walhook:ROW%zzPW2@127.0.0.1:1/db",
         "invalid percent-encoded token: \"ROW%zzPW2\"", "invalid percent-encoded token: \"****\""},
        {"postgresql://u:A%41B@h/db", "x AAB y A%41B z", "x **** y **** z"},
        {"postgresql://u@h/db?password=Q%20R&sslmode=x", "Q R and Q%20R", "**** and ****"},
        {"host=h password='s e\\'c' user=u", "s e'c|'s e\\'c'", "****|****"},
        {"host=h password=my secret", "my secret", "**** ****"},
        {"host=h password='open", "'open and open", "**** and ****"},
        {"host=h", "see postgres://a:XYZ@h/x and http://b:Q@h",
         "see postgres://a:***@h/x and "
         "http://b:*@h"},
        {NULL, "postgresql://a:LONGPASSWORD@h", "postgresql://a:****@h"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wh_dsn_scrub(cases[i].dsn, cases[i].msg, out, sizeof(out));
        assert_string_equal(out, cases[i].out);
    }
    wh_dsn_scrub("postgresql://u:LONGSECRET@h", "LONGSECRET", out, 3);
    assert_string_equal(out, "**");
}

/* Whatever libpq refuses, wh_dsn_check refuses too (the daemons that do
 * not link libpq rely on it), and wh_pgerr_dsn_check's message never quotes
 * the DSN. */
static void test_dsn_libpq(void **state)
{
    const char *dsns[] = {
        "postgresql://walhook:PWMARK@[]:5432/db",
        "postgresql://walhook:PWMARK@[::1]x:5432/db",
        "postgresql://walhook:PW%zzMARK@127.0.0.1:1/db",
        "postgresql://walhook:PW%0MARK@127.0.0.1:1/db",
        "postgresql://walhook:PW%00MARK@127.0.0.1:1/db",
        "postgresql://walhook:PWMARK@h/db?sslmode=a=b",
        "postgresql://walhook:PWMARK@h/db?sslmode",
        "postgresql://walhook:PWMARK@h/db?x%zz=1",
        "postgresql://walhook:PWMARK@h/db?application_name=%zzPWMARK",
        "postgresql://walhook:PWMARK@[::1:5432/db",
        "host=h password=PWMARK junk",
        "host=h password='PWMARK",
        "host=h passwrd=PWMARK",
        "postgresql://walhook:PWMARK@h:99999/db",
        "postgresql://walhook:PWMARK@h:5432/db",
        "host=h password='PW MARK' user=u",
    };
    char err[WH_ERRLEN];
    for (size_t i = 0; i < sizeof(dsns) / sizeof(dsns[0]); i++) {
        char *perr = NULL;
        PQconninfoOption *o = PQconninfoParse(dsns[i], &perr);
        int libpq_ok = o != NULL;
        PQconninfoFree(o);
        PQfreemem(perr);
        int ours = wh_dsn_check(dsns[i], err, sizeof(err));
        if (!libpq_ok && ours == WH_OK)
            fail_msg("'%s': libpq refuses it, wh_dsn_check accepts it", dsns[i]);
        err[0] = '\0';
        int rc = wh_pgerr_dsn_check(dsns[i], err, sizeof(err));
        assert_int_equal(rc == WH_OK, libpq_ok && ours == WH_OK);
        if (strstr(err, "MARK") || strstr(err, "walhook") || strstr(err, "junk"))
            fail_msg("'%s': the error quotes the DSN: %s", dsns[i], err);
    }
}

static void test_dsn_redact(void **state)
{
    struct {
        const char *in, *out;
    } cases[] = {
        {"postgresql://bob:hunter2@db:5432/x", "postgresql://bob:****@db:5432/x"},
        {"postgresql://bob@db/x?password=hunter2&sslmode=require",
         "postgresql://bob@db/x?password=****&sslmode=require"},
        {"host=db password = s3cret user=x", "host=db password=**** user=x"},
        {"host=db password='my secret' user=x", "host=db password=**** user=x"},
        {"host=db sslpassword=k3y", "host=db sslpassword=****"},
        {"host=db password=my secret", "host=db password=**** ..."},
    };
    char out[256], err[WH_ERRLEN];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wh_dsn_redact(cases[i].in, out, sizeof(out));
        assert_string_equal(out, cases[i].out);
    }
    /* errors never quote a value */
    const char *leaky[] = {"postgresql://u:ab/cd@db/x", "host=db password=my secret",
                           "host=db password=my secret=x"};
    for (size_t i = 0; i < sizeof(leaky) / sizeof(leaky[0]); i++) {
        assert_int_equal(wh_dsn_check(leaky[i], err, sizeof(err)), WH_ERR);
        if (strstr(err, "ab") || strstr(err, "secret"))
            fail_msg("error for '%s' quotes a value: %s", leaky[i], err);
    }
    wh_dsn_redact("host=x", out, 4);
    assert_string_equal(out, "hos");
}

/* The database a DSN names (Debezium source.db), as libpq picks it. */
static void test_dsn_dbname(void **state)
{
    (void)state;
    struct {
        const char *in, *out;
    } cases[] = {
        {"postgresql://bob:hunter2@db:5432/shop", "shop"},
        {"postgres://db/caf%C3%A9?sslmode=require", "caf\xc3\xa9"},
        {"postgresql://bob@db", "bob"},
        {"postgresql://db/x?dbname=y&user=z", "y"},
        {"postgresql://db?user=z", "z"},
        {"postgresql://db", ""},
        {"host=db dbname=orders user=x", "orders"},
        {"host=db dbname='my db' password=s", "my db"},
        {"host=db user=alice", "alice"},
        {"host=db", ""},
    };
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wh_dsn_dbname(cases[i].in, out, sizeof(out));
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("%s: \"%s\", expected \"%s\"", cases[i].in, out, cases[i].out);
    }
    wh_dsn_dbname("dbname=abcdef", out, 4);
    assert_string_equal(out, "abc");
}

#define GOOD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" /* 24 bytes */

static int check_target(const char *name, const char *url, const char *secret, char *err,
                        size_t errlen)
{
    wh_target t;
    memset(&t, 0, sizeof(t));
    wh_strlcpy(t.name, name, sizeof(t.name));
    wh_strlcpy(t.url, url, sizeof(t.url));
    wh_strlcpy(t.secret, secret, sizeof(t.secret));
    err[0] = '\0';
    return wh_target_validate(&t, err, errlen);
}

/* Issue 5, defect 3: one target check for `walhook check`, every daemon and
 * the dispatcher. */
static void test_target_validate(void **state)
{
    char err[WH_ERRLEN];
    struct {
        const char *name, *url, *secret;
    } good[] = {
        {"a", "http://127.0.0.1:9000/x", ""},
        {"orders", "https://hooks.example/orders?x=1&y=%20#f", GOOD_SECRET},
        {"v6", "http://[::1]:8080/", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, /* prefix optional */
        {"user.x-1_", "https://u:p@h.example",
         "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gI"
         "SIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="},
    };
    for (size_t i = 0; i < WH_ARRAY_LEN(good); i++)
        if (check_target(good[i].name, good[i].url, good[i].secret, err, sizeof(err)) != WH_OK)
            fail_msg("%s rejected: %s", good[i].url, err);
    struct {
        const char *name, *url, *secret, *needle;
    } bad[] = {
        {"a", "http://h/", "whsec_!!!",
         "target 'a' secret: not whsec_ followed by standard base64"},
        {"a", "http://h/", "whsec_", "target 'a' secret: empty"},
        {"a", "http://h/", "whsec_AAECAwQFBgcICQoLDA0ODw==", "decodes to 16 bytes"},
        {"a", "http://h/",
         "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD"
         "0+P0A=",
         "decodes to 65 bytes"},
        {"a", "http://h/", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwA", "secret: not whsec_"},
        {"a", "http://h/", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "decodes to 23 bytes"},
        {"a", "http://h/x\r\nX-Injected: 1", "", "target 'a' url: byte 10 is a control character"},
        {"a", "http://h/a b", "", "url: byte 10"},
        {"a", "ftp://h/", "", "target 'a' url: must start with http:// or https://"},
        {"a", "", "", "target 'a' url: missing"},
        {"a", "http:///path", "", "url: no host"},
        {"a", "https://user@:443/", "", "url: no host"},
        {"a", "http://h:0/", "", "port must be a number from 1 to 65535"},
        {"a", "http://h:65536/", "", "port"},
        {"a", "http://h:/", "", "port"},
        {"a", "http://h:8x/", "", "port"},
        {"a", "http://h!x/", "", "host may hold"},
        {"a", "http://[zz]/", "", "IPv6"},
        {"a", "http://[::1]x/", "", "after the IPv6"},
        {"bad name", "http://h/", "", "name: must be"},
        {"", "http://h/", "", "name: must be"},
    };
    for (size_t i = 0; i < WH_ARRAY_LEN(bad); i++) {
        if (check_target(bad[i].name, bad[i].url, bad[i].secret, err, sizeof(err)) != WH_ERR)
            fail_msg("'%s' '%s' accepted", bad[i].url, bad[i].secret);
        if (strstr(err, bad[i].needle) == NULL)
            fail_msg("'%s': error '%s' does not mention '%s'", bad[i].url, err, bad[i].needle);
        if (strlen(bad[i].secret) > 6 && strstr(err, bad[i].secret + 6) != NULL)
            fail_msg("error '%s' quotes the secret", err);
    }

    /* the file: named with its index and line, whatever comes after */
    wh_config c;
    assert_int_equal(load_text(&c,
                               "targets = ( { name = \"good\"; url = \"http://127.0.0.1:1/\"; },\n"
                               "  { name = \"bad\"; url = \"http://127.0.0.1:2/\";\n"
                               "    secret = \"whsec_!!!\"; } );\n",
                               err, sizeof(err)),
                     WH_ERR);
    assert_non_null(strstr(err, "targets[1] (line 2): target 'bad' secret: not whsec_"));
    assert_int_equal(load_text(&c,
                               "targets = ( { name = \"x\"; url = \"http://h:1/\"; },\n"
                               "  { name = \"x\"; url = \"http://h:2/\"; } );\n",
                               err, sizeof(err)),
                     WH_ERR);
    assert_non_null(strstr(err, "targets[1] (line 2): duplicate name 'x' (as targets[0])"));
    assert_int_equal(
        load_text(&c, "targets = ( { url = \"http://h/\\r\\nX: 1\"; } );\n", err, sizeof(err)),
        WH_ERR);
    assert_non_null(strstr(err, "targets[0] (line 1): target 't0' url: byte 9"));
    /* the environment */
    setenv("WALHOOK_TARGETS", "a=http://h:1/,b=http://:2/", 1);
    int rc = wh_config_load(&c, NULL, err, sizeof(err));
    unsetenv("WALHOOK_TARGETS");
    assert_int_equal(rc, WH_ERR);
    assert_non_null(strstr(err, "WALHOOK_TARGETS: targets[1]: target 'b' url: no host"));
    /* targets set by a program (flags of walhook up) go through the same check */
    assert_int_equal(wh_config_load(&c, NULL, err, sizeof(err)), WH_OK);
    c.ntargets = 1;
    memset(&c.targets[0], 0, sizeof(c.targets[0]));
    wh_strlcpy(c.targets[0].name, "p", sizeof(c.targets[0].name));
    wh_strlcpy(c.targets[0].url, "http://h/", sizeof(c.targets[0].url));
    wh_strlcpy(c.targets[0].secret, "whsec_!!!", sizeof(c.targets[0].secret));
    assert_int_equal(wh_config_validate(&c, err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "targets[0]: target 'p' secret: not whsec_"));

    /* the decoder the dispatcher signs with */
    unsigned char key[WH_SECRET_MAX_BYTES];
    size_t klen = 99;
    assert_int_equal(wh_secret_decode("", key, &klen, err, sizeof(err)), WH_OK);
    assert_int_equal(klen, 0);
    assert_int_equal(wh_secret_decode(GOOD_SECRET, key, &klen, err, sizeof(err)), WH_OK);
    assert_int_equal(klen, 24);
}

/* Issue 5, defect 7: 30,000 unknown settings took seconds to refuse
 * (libconfig 1.5 parses a group of n settings in n^2). The file is refused at
 * its first unknown setting, named with its line, before libconfig parses
 * anything; a valid file is parsed once. */
static void test_many_unknown_settings(void **state)
{
    for (int n = 30000; n <= 60000; n += 30000) {
        wh_buf b;
        wh_buf_init(&b, 0);
        assert_int_equal(wh_buf_puts(&b, "tenant = \"shop\";\n# then many typos\n"), WH_OK);
        for (int i = 0; i < n; i++)
            assert_int_equal(wh_buf_printf(&b, "unknown_%d = %d;\n", i, i), WH_OK);
        assert_int_equal(wh_buf_cstr(&b), WH_OK);
        wh_config c;
        char err[WH_ERRLEN] = "";
        libconfig_parses = 0;
        assert_int_equal(load_text(&c, b.data, err, sizeof(err)), WH_ERR);
        wh_buf_free(&b);
        if (strstr(err, "unknown setting 'unknown_0' (line 3)") == NULL)
            fail_msg("%d keys: error '%s' does not name the first unknown key", n, err);
        assert_int_equal(libconfig_parses, 0);
    }
    /* the same check inside a group and inside a target */
    wh_config c;
    char err[WH_ERRLEN] = "";
    libconfig_parses = 0;
    assert_int_equal(load_text(&c, "source = {\n slot = \"s\";\n dns = \"x\"; a = 1; b = 2; };\n",
                               err, sizeof(err)),
                     WH_ERR);
    assert_non_null(strstr(err, "unknown setting 'source.dns' (line 3)"));
    assert_int_equal(load_text(&c,
                               "targets = ( { url = \"http://h/\"; },\n { colour = \"red\"; } );\n",
                               err, sizeof(err)),
                     WH_ERR);
    assert_non_null(strstr(err, "unknown setting 'targets[1].colour' (line 2)"));
    /* an unknown group is an unknown setting, even when empty */
    assert_int_equal(load_text(&c, "tenant = \"t\";\nfoo = {};\n", err, sizeof(err)), WH_ERR);
    assert_non_null(strstr(err, "unknown setting 'foo' (line 2)"));
    assert_int_equal(libconfig_parses, 0);
    /* a valid file goes to libconfig once */
    assert_int_equal(
        load_text(&c, "tenant = \"t\"; source = { slot = \"s\"; };\n", err, sizeof(err)), WH_OK);
    assert_int_equal(libconfig_parses, 1);
}

typedef struct scan_log {
    char seen[16][64];
    int lines[16];
    int n;
    const char *stop_at; /* path that stops the walk */
} scan_log;

/* wh_config_check_secret_files: messages collected */
typedef struct warn_acc {
    char text[4096];
    int n;
} warn_acc;

static void warn_collect(void *arg, const char *msg)
{
    warn_acc *w = arg;
    size_t len = strlen(w->text);
    snprintf(w->text + len, sizeof(w->text) - len, "%s\n", msg);
    w->n++;
}

static int secret_files(const wh_config *c, const char *file, mode_t mode, warn_acc *w)
{
    memset(w, 0, sizeof(*w));
    if (file != NULL)
        assert_int_equal(chmod(file, mode), 0);
    int n = wh_config_check_secret_files(c, file, warn_collect, w);
    assert_int_equal(n, w->n);
    return n;
}

/* A config file that holds secrets, and TLS key files, that group or
 * others may read are reported, naming the settings, never a value. */
static void test_secret_files(void **state)
{
    (void)state;
    wh_config c;
    char err[WH_ERRLEN], key[64];
    warn_acc w;
    wh_config_defaults(&c);
    const char *f = write_conf("source = { dsn = \"postgresql://u:Pw0rdX@127.0.0.1/x\"; };\n"
                               "admin = { admin_token = \"TokAdmin0123456789\"; };\n"
                               "targets = ( { name = \"a\"; url = \"http://h.example/\"; },\n"
                               "            { name = \"b\"; url = \"http://h.example/\"; secret = "
                               "\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"; } );\n");
    assert_int_equal(wh_config_load(&c, f, err, sizeof(err)), WH_OK);
    assert_int_equal(secret_files(&c, f, 0644, &w), 1);
    assert_non_null(strstr(w.text, "readable by others (mode 0644)"));
    assert_non_null(strstr(w.text, "source.dsn (a password)"));
    assert_non_null(strstr(w.text, "admin.admin_token"));
    assert_non_null(strstr(w.text, "targets[1].secret"));
    assert_null(strstr(w.text, "targets[0]"));
    assert_null(strstr(w.text, "Pw0rdX"));
    assert_null(strstr(w.text, "TokAdmin"));
    assert_null(strstr(w.text, "MfKQ9r8"));
    assert_int_equal(secret_files(&c, f, 0640, &w), 1);
    assert_non_null(strstr(w.text, "readable by its group (mode 0640)"));
    assert_int_equal(secret_files(&c, f, 0600, &w), 0);
    assert_int_equal(secret_files(&c, f, 0620, &w), 0); /* not readable */
    /* no secret in it: a readable file is fine */
    write_conf("source = { dsn = \"postgresql://u@127.0.0.1/x\"; };\n"
               "targets = ( { name = \"a\"; url = \"http://h.example/?x=1\"; } );\n");
    assert_int_equal(secret_files(&c, f, 0644, &w), 0);
    /* key=value DSN passwords, URL passwords, a tenants list */
    write_conf("tenants = ( { name = \"t\"; source = { dsn = \"host=h password=Pw0rdY\"; };\n"
               "  targets = ( { name = \"x\"; url = \"https://u:Pw0rdZ@h.example/\"; },\n"
               "              { name = \"y\"; url = \"https://h.example/\"; secrets = "
               "[\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]; } ); } );\n");
    assert_int_equal(secret_files(&c, f, 0604, &w), 1);
    assert_non_null(strstr(w.text, "tenants[0].source.dsn (a password)"));
    assert_non_null(strstr(w.text, "tenants[0].targets[0].url (a password)"));
    assert_non_null(strstr(w.text, "tenants[0].targets[1].secrets[0]"));
    assert_null(strstr(w.text, "Pw0rd"));
    unlink(f);
    /* key files, with or without a config file */
    snprintf(key, sizeof(key), "/tmp/wh_cfg_test_%d.key", (int)getpid());
    FILE *k = fopen(key, "w");
    assert_non_null(k);
    fclose(k);
    wh_config_defaults(&c);
    wh_strlcpy(c.admin_tls_key, key, sizeof(c.admin_tls_key));
    wh_strlcpy(c.ipc_tls_key, key, sizeof(c.ipc_tls_key));
    assert_int_equal(chmod(key, 0640), 0);
    assert_int_equal(secret_files(&c, NULL, 0, &w), 2);
    assert_non_null(strstr(w.text, "admin.tls_key /tmp/wh_cfg_test_"));
    assert_non_null(strstr(w.text, "ipc.tls_key /tmp/wh_cfg_test_"));
    assert_non_null(strstr(w.text, "(mode 0640): chmod 600"));
    assert_int_equal(chmod(key, 0600), 0);
    assert_int_equal(secret_files(&c, NULL, 0, &w), 0);
    unlink(key);
    assert_int_equal(secret_files(&c, NULL, 0, &w), 0); /* missing: not ours to say */
}

static int scan_cb(void *arg, const char *p, int line)
{
    scan_log *l = arg;
    if (l->n < 16) {
        snprintf(l->seen[l->n], sizeof(l->seen[l->n]), "%s", p);
        l->lines[l->n] = line;
    }
    l->n++;
    if (l->stop_at && strcmp(p, l->stop_at) == 0)
        return WH_CFGSCAN_STOP;
    return strcmp(p, "skipped") == 0 ? WH_CFGSCAN_SKIP : WH_CFGSCAN_DESCEND;
}

static void test_cfgscan(void **state)
{
    const char *text = "# comment with a = b;\n"
                       "a = \"x # not a comment\" \"y \\\" } still a string\";\n"
                       "/* block\n comment { */ b : 1.5e+3, c = [1, 2, 3]\n"
                       "g = { h = true; i = ( { j = 0x1F; }, \"s\", ( 1 ) ); }; // tail\n"
                       "skipped = { hidden = 1; };\n"
                       "e = ();\n";
    scan_log l = {0};
    assert_int_equal(wh_cfgscan(text, strlen(text), scan_cb, &l), 0);
    const char *want[] = {"a", "b", "c", "g", "g.h", "g.i", "g.i[0].j", "skipped", "e"};
    const int lines[] = {2, 4, 4, 5, 5, 5, 5, 6, 7};
    assert_int_equal(l.n, (int)WH_ARRAY_LEN(want));
    for (size_t i = 0; i < WH_ARRAY_LEN(want); i++) {
        assert_string_equal(l.seen[i], want[i]);
        assert_int_equal(l.lines[i], lines[i]);
    }
    /* stop */
    scan_log s = {.stop_at = "g.h"};
    assert_int_equal(wh_cfgscan(text, strlen(text), scan_cb, &s), 1);
    assert_int_equal(s.n, 5);
    /* what the scanner does not follow ends the walk quietly */
    const char *giveup[] = {"@include \"x.conf\"\nbad = 1;\n", "a = ;\nbad = 1;\n",
                            "a = \"open\nbad = 1;\n", "a = 1 }\nbad = 1;\n",
                            "a = /* open\nbad = 1;\n"};
    for (size_t i = 0; i < WH_ARRAY_LEN(giveup); i++) {
        scan_log g = {.stop_at = "bad"};
        assert_int_equal(wh_cfgscan(giveup[i], strlen(giveup[i]), scan_cb, &g), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_plaintext_tcp),
        cmocka_unit_test(test_skip_origins),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_static_diff_and_json),
        cmocka_unit_test(test_dsn_syntax),
        cmocka_unit_test(test_dsn_redact),
        cmocka_unit_test(test_dsn_scrub),
        cmocka_unit_test(test_dsn_libpq),
        cmocka_unit_test(test_dsn_dbname),
        cmocka_unit_test(test_target_validate),
        cmocka_unit_test(test_many_unknown_settings),
        cmocka_unit_test(test_cfgscan),
        cmocka_unit_test(test_secret_files),
    };
    return cmocka_run_group_tests_name("common_config", tests, NULL, NULL);
}
