/* dsp_webhook: batch body, headers and Standard Webhooks signature. */
#include "dsp_webhook.h"

#include <inttypes.h>
#include <stdio.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "wh_config.h"
#include "wh_util.h"

int dsp_key_parse(dsp_key *key, const char *secret, char *err, size_t errlen)
{
    memset(key, 0, sizeof(*key));
    return wh_secret_decode(secret, key->bytes, &key->len, err, errlen);
}

int dsp_body_begin(wh_buf *b)
{
    wh_buf_reset(b);
    return wh_buf_putc(b, '[');
}

int dsp_body_add(wh_buf *b, size_t index, const void *json, size_t len)
{
    if (wh_buf_reserve(b, len + 2) != WH_OK)
        return WH_ERR;
    if (index > 0 && wh_buf_putc(b, ',') != WH_OK)
        return WH_ERR;
    return wh_buf_append(b, json, len);
}

int dsp_body_end(wh_buf *b)
{
    if (wh_buf_putc(b, ']') != WH_OK)
        return WH_ERR;
    return wh_buf_cstr(b);
}

int dsp_body_build(wh_buf *b, const void *const *jsons, const size_t *lens, size_t n)
{
    size_t total = 2 + n;
    for (size_t i = 0; i < n; i++)
        total += lens[i];
    if (dsp_body_begin(b) != WH_OK || wh_buf_reserve(b, total) != WH_OK)
        return WH_ERR;
    for (size_t i = 0; i < n; i++)
        if (dsp_body_add(b, i, jsons[i], lens[i]) != WH_OK)
            return WH_ERR;
    return dsp_body_end(b);
}

/* The HMAC implementation, looked up once per process (a provider lookup
 * takes locks; contexts are made per request). */
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac;

static void hmac_fetch(void)
{
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

int dsp_sign(const dsp_key *key, const char *msg_id, int64_t ts, const void *body, size_t len,
             char *out, size_t outlen)
{
    char tsbuf[32];
    int tslen = snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ts);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    int ok = 0;
    pthread_once(&hmac_once, hmac_fetch);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    if (ctx != NULL) {
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_end(),
        };
        ok = EVP_MAC_init(ctx, key->bytes, key->len, params) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)msg_id, strlen(msg_id)) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)tsbuf, (size_t)tslen) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
             (len == 0 || EVP_MAC_update(ctx, body, len) == 1) &&
             EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) == 1;
    }
    EVP_MAC_CTX_free(ctx);
    if (!ok)
        return WH_ERR;
    wh_buf b;
    wh_buf_init(&b, 0);
    int rc = wh_buf_puts(&b, "v1,");
    if (rc == WH_OK)
        rc = wh_base64(&b, mac, maclen);
    if (rc == WH_OK && b.len < outlen) {
        memcpy(out, b.data, b.len);
        out[b.len] = '\0';
    } else {
        rc = WH_ERR;
    }
    wh_buf_free(&b);
    return rc;
}

int dsp_headers_build(dsp_headers *h, const dsp_key *keys, int nkeys, const char *msg_id,
                      size_t nevents, int64_t ts, const void *body, size_t len, char *err,
                      size_t errlen)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->content_type, sizeof(h->content_type), "Content-Type: application/json");
    snprintf(h->batch_size, sizeof(h->batch_size), "X-Batch-Size: %zu", nevents);
    if ((size_t)snprintf(h->id, sizeof(h->id), "webhook-id: %s", msg_id) >= sizeof(h->id))
        return wh_seterr(err, errlen, "webhook-id too long");
    snprintf(h->timestamp, sizeof(h->timestamp), "webhook-timestamp: %" PRId64, ts);
    size_t used = 0;
    for (int i = 0; keys != NULL && i < nkeys; i++) {
        if (keys[i].len == 0)
            continue;
        char sig[DSP_SIG_MAX];
        if (dsp_sign(&keys[i], msg_id, ts, body, len, sig, sizeof(sig)) != WH_OK)
            return wh_seterr(err, errlen, "HMAC-SHA256 signing failed");
        int n = snprintf(h->signature + used, sizeof(h->signature) - used, "%s%s",
                         used == 0 ? "webhook-signature: " : " ", sig);
        if (n < 0 || (size_t)n >= sizeof(h->signature) - used)
            return wh_seterr(err, errlen, "webhook-signature: too many secrets");
        used += (size_t)n;
    }
    return WH_OK;
}
