/* dsp_dlq: dead letters to the store. See dsp_dlq.h. */
#include "dsp_dlq.h"

#include "wh_util.h"

int dsp_dlq_write(wh_client *store, const dsp_dlq_req *r, char *err, size_t errlen)
{
    WH_UNUSED(store);
    WH_UNUSED(r);
    return wh_seterr(err, errlen, "the store has no dead-letter queue (DlqWrite) yet");
}
