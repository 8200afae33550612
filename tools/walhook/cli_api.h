/* cli_api: `walhook tenants|targets|dlq|settings|slots ...`: the admin REST API
 * (docs/openapi.json) for people at a terminal, over libcurl.
 *   --admin URL  (default: http[s]://<admin.listen> of -c FILE / env, or
 *                WALHOOK_ADMIN_URL)
 *   token        WALHOOK_ADMIN_TOKEN, else the admin token of
 *                admin.tokens_file or <data_dir>/admin.token
 *   --json       the server's JSON as is; otherwise tables / key: value
 * Exit status: 0 on 2xx, 1 on a server (5xx) or transport error, 2 on bad
 * usage or a 4xx answer (the server's error message is printed). */
#ifndef CLI_API_H
#define CLI_API_H

/* argv[0] is the command name ("tenants", "targets", "dlq", "settings", "slots"). */
int cli_cmd_api(int argc, char **argv);

#endif
