/* dsp_webhook: what goes on the wire for one batch — the JSON array body
 * (events' envelope bytes joined with commas, never re-encoded), the request
 * headers, and the Standard Webhooks signature. Pure functions, no I/O. */
#ifndef DSP_WEBHOOK_H
#define DSP_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "wh_buf.h"
#include "wh_config.h"

#define DSP_KEY_MAX WH_SECRET_MAX_BYTES /* decoded signing key bytes */
#define DSP_SIG_MAX 64                  /* "v1," + base64(32 bytes) + NUL = 48 */
#define DSP_HDR_MAX 512                 /* one header line */
#define DSP_KEYS_MAX 4                  /* secrets of one target (rotation): one signature each */

/* Decoded signing key of a target; len 0 = unsigned target. */
typedef struct dsp_key {
    unsigned char bytes[DSP_KEY_MAX];
    size_t len;
} dsp_key;

/* Parses a Standard Webhooks secret "whsec_<base64>" (the prefix is
 * optional). "" gives an empty key. Errors name the problem, not the
 * secret. */
int dsp_key_parse(dsp_key *key, const char *secret, char *err, size_t errlen);

/* Body: resets b, then writes "[" j0 "," j1 ... "]". jsons[i] points at
 * lens[i] bytes of one event envelope. Buffer memory is reused. */
int dsp_body_build(wh_buf *b, const void *const *jsons, const size_t *lens, size_t n);
/* Incremental form used by the store reader: begin, add each event, end. */
int dsp_body_begin(wh_buf *b);
int dsp_body_add(wh_buf *b, size_t index, const void *json, size_t len);
int dsp_body_end(wh_buf *b);

/* "v1,<base64 HMAC-SHA256(key, id "." ts "." body)>" into out (>= DSP_SIG_MAX). */
int dsp_sign(const dsp_key *key, const char *msg_id, int64_t ts, const void *body, size_t len,
             char *out, size_t outlen);

/* The header lines of one attempt (curl_slist form "Name: value"). */
typedef struct dsp_headers {
    char content_type[DSP_HDR_MAX];
    char batch_size[DSP_HDR_MAX];
    char id[DSP_HDR_MAX];
    char timestamp[DSP_HDR_MAX];
    char signature[DSP_HDR_MAX]; /* "" when the target has no secret */
} dsp_headers;

/* keys[0..nkeys): one "v1,<sig>" per non-empty key, space-separated in one
 * webhook-signature header (Standard Webhooks key rotation). */
int dsp_headers_build(dsp_headers *h, const dsp_key *keys, int nkeys, const char *msg_id,
                      size_t nevents, int64_t ts, const void *body, size_t len, char *err,
                      size_t errlen);

#endif
