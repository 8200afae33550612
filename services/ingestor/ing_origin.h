/* ing_origin: replication origins in the decoder (docs/INTERNALS.md "Event
 * identity and envelope", origin).
 *
 * pgoutput sends an Origin message ('O': the origin's commit LSN and name)
 * right after Begin when the transaction was written in a session with a
 * replication origin (pg_replication_origin_session_setup, or a logical
 * replication apply worker). The decoder (ing_repl) hands every message of
 * a transaction to ing_origin_step:
 *  - Begin: no origin, nothing skipped;
 *  - Origin: the name goes onto the transaction (ing_txn_set_origin: each
 *    of its events carries "origin":"name"), and when `skip` says the origin
 *    is listed in source.skip_origins the transaction is skipped;
 *  - Insert/Update/Delete/Truncate, and a transactional Message, of a
 *    skipped transaction: dropped (counted). Relation and Type messages are
 *    never dropped (the relation cache needs them), nor Commit: a skipped
 *    transaction's Commit moves the flush LSN like any other, so skipped
 *    transactions never pin the slot.
 * Pure: no I/O, no locks of its own (skip may take one). */
#ifndef ING_ORIGIN_H
#define ING_ORIGIN_H

#include <stddef.h>
#include <stdint.h>

#include "ing_event.h"
#include "ing_pgoutput.h"

/* 1 when the transactions of origin `name` are to be skipped. */
typedef int (*ing_origin_skip_fn)(void *arg, const char *name);

typedef struct ing_origin {
    int skip;                 /* the current transaction is skipped */
    uint64_t skipped_txns;    /* transactions skipped */
    uint64_t skipped_changes; /* changes and messages dropped */
} ing_origin;

enum { ING_ORIGIN_KEEP = 0, ING_ORIGIN_DROP = 1 };

/* One parsed message m of the stream, before the decoder acts on it: updates
 * o and t (Begin: after the decoder's ing_txn_begin; Origin: t's origin).
 * Returns ING_ORIGIN_DROP when m is a change (I, U, D, T, or a transactional
 * M inside a transaction) of a skipped transaction, else ING_ORIGIN_KEEP; -1
 * (err says why) for the origin name of a transaction that is not skipped
 * and cannot be rendered (longer than WH_ORIGIN_NAME_MAX). skip may be NULL
 * (nothing skipped). */
int ing_origin_step(ing_origin *o, ing_txn *t, const ing_msg *m, int in_txn,
                    ing_origin_skip_fn skip, void *arg, char *err, size_t errlen);

#endif
