/* ing_origin: the transaction's replication origin, source.skip_origins. */
#include "ing_origin.h"

#include "wh_util.h"

int ing_origin_step(ing_origin *o, ing_txn *t, const ing_msg *m, int in_txn,
                    ing_origin_skip_fn skip, void *arg, char *err, size_t errlen)
{
    switch (m->type) {
    case 'B':
        o->skip = 0;
        return ING_ORIGIN_KEEP;
    case 'O':
        if (!in_txn)
            return ING_ORIGIN_KEEP; /* only after Begin; nothing to attach it to */
        if (!o->skip && skip != NULL && m->name != NULL && skip(arg, m->name)) {
            o->skip = 1;
            o->skipped_txns++;
        }
        /* a name too long to render matters only when events carry it */
        if (ing_txn_set_origin(t, m->name, err, errlen) != WH_OK && !o->skip)
            return -1;
        return ING_ORIGIN_KEEP;
    case 'I':
    case 'U':
    case 'D':
    case 'T':
        break;
    case 'M':
        if (!(m->flags & 1) || !in_txn)
            return ING_ORIGIN_KEEP; /* non-transactional: no origin known */
        break;
    case 'C':
        o->skip = 0;
        return ING_ORIGIN_KEEP;
    default:
        return ING_ORIGIN_KEEP;
    }
    if (!o->skip || !in_txn)
        return ING_ORIGIN_KEEP;
    o->skipped_changes += m->type == 'T' ? (uint64_t)(m->nrels > 0 ? m->nrels : 0) : 1;
    return ING_ORIGIN_DROP;
}
