/* dsp_lease: shares the targets between dispatcher replicas through leases
 * kept in the store (LeaseAcquire/Renew/Release/List, docs/INTERNALS.md).
 *
 * A thread of its own, with its own store client, runs every TTL/3 (a
 * round that took long: TTL/3 after the first renewal it sent, or at once
 * when that passed):
 *   1. LeaseList: the live replicas R (owners seen by the store within
 *      their TTL, this one included) and who holds what;
 *   2. renews every lease it holds (a refused renewal: the target is lost);
 *   3. fair share = ceil(targets / R): above it, releases one lease per
 *      round (another replica picks it up); below it, acquires free or
 *      expired ones. An Acquire without an answer (outcome unknown: not
 *      held, never posted to) counts toward the share, and is asked again
 *      after the round's other Acquires and, in later rounds, after the
 *      others until one is answered; no Acquire starts whose timeout would
 *      end past 2/3 of the TTL from the round's start (the next round,
 *      which renews, then starts at once).
 * A lease counts as held locally only until the time of the request that
 * got it + TTL * 4/5 (the store's expiry is later than that). The thread
 * wakes when that validity ends; a lease not renewed by then (the store did
 * not answer) is given up here at once and the callback tells the loop,
 * which drops the target, so a replica that cannot reach the store stops
 * posting before another can take the target. The fencing epoch (carried
 * by every CommitOffset, DlqWrite and ReplayAck) makes the store refuse
 * whatever a paused old owner still tries to commit.
 *
 * The callback set with dsp_lease_on_change runs after every change of the
 * held set; the loop's targets are then those dsp_lease_owns(tenant,
 * target, &epoch) says are held, each with its epoch (a new epoch for a
 * target it had: read again from the committed offset).
 *
 * Teardown: dsp_lease_stop releases every lease held (so another replica
 * takes over at once), stops the thread, closes the client. */
#ifndef DSP_LEASE_H
#define DSP_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "wh_buf.h"

#define DSP_LEASE_OWNER_MAX 127
#define DSP_LEASE_MAX_TARGETS 4096
/* ms: the longest request timeout a takeover waits for (the maximum of
 * dispatcher.http_timeout_ms); a store telling more is not believed */
#define DSP_LEASE_TOLD_MAX_MS 600000

typedef struct dsp_lease dsp_lease;

typedef struct dsp_lease_opts {
    const char *store_endpoint;
    int ipc_timeout_ms;
    size_t max_msg;
    const char *owner;   /* dispatcher.id; NULL or "": dsp_lease_default_owner() */
    int ttl_ms;          /* >= 1000 */
    const char *control; /* announced with LeaseList for the admin (NULL or "": none) */
} dsp_lease_opts;

/* The control endpoint a replica announces (dispatcher.advertise unset):
 * control itself, unless it is tcp:// or tls+tcp:// on a wildcard host
 * (0.0.0.0, [::], *, empty), which becomes this host's name (a container's
 * name on a compose network). WH_ERR when it does not fit or the host has
 * no name. */
int dsp_lease_advertise(char *out, size_t len, const char *control);

/* "<hostname>-<pid>" (characters outside [A-Za-z0-9._-] become '_'). */
/* The owner a replica names in the store's leases is "<id>#<instance>",
 * the instance 8 random hex digits drawn at start: two processes given the
 * same dispatcher.id (one config file for every replica, or replicas with
 * the same hostname and pid 1) are still two owners, each with its own
 * leases and fencing epochs, never one owner posting from two places. A
 * replica restarted after a crash takes its targets back once its old
 * leases expire (the TTL), as any other replica would. */
void dsp_lease_default_owner(char *out, size_t len);

int dsp_lease_start(dsp_lease **out, const dsp_lease_opts *o, char *err, size_t errlen);
/* Thread-safe: the targets to share (copied), each with its request timeout
 * (quiet_ms; NULL: 0). A held lease of a target no longer listed (deleted)
 * is kept, renewed, for its request timeout, then released: the loop lets
 * the target's requests in flight end, and a target created again under
 * the name meanwhile stays here (the loop posts to it once they ended)
 * rather than going to a replica that would post at once. A lowered
 * timeout keeps counting as the old one for that long after the change
 * (requests started under it may still run).
 *
 * No two replicas post to a target at once: a lease taken over from a
 * holder that let it lapse (died, hung, lost the store: LeaseReply
 * taken_over), or released with requests abandoned (stopped with requests
 * unanswered, LeaseRelease.abandoned), is held but not owned
 * (dsp_lease_owns 0) until a request timeout has passed since it lapsed,
 * since a request the old holder sent ends by its timeout: the longer of
 * the target's quiet_ms here and the longest timeout its holders told the
 * store (each Acquire and Renew tells it: LeaseReply.request_timeout_ms);
 * the same after this replica abandoned requests itself
 * (dsp_lease_abandoned).
 * A receiver that answers within the timeout never sees two requests of
 * one target at once; a takeover after a crash costs the TTL plus up to
 * the timeout. */
int dsp_lease_set_targets(dsp_lease *l, const char *const *tenants, const char *const *names,
                          const int *quiet_ms, size_t n);
/* Thread-safe: the longest a request started here to the target may still
 * run (its quiet_ms, or a larger one it had before, for that long after the
 * change): told to the store with Acquire and Renew, and the bound of the
 * wait after this replica abandons requests. -1: not a listed target. */
int dsp_lease_request_timeout(dsp_lease *l, const char *tenant, const char *target);
/* Thread-safe (arg: the dsp_lease): requests to the target were abandoned
 * unanswered just now (dsp_loop_on_abandon). */
void dsp_lease_abandoned(void *arg, const char *tenant, const char *target);
/* Thread-safe (arg: the dsp_lease): the loop stopped a target given up to
 * balance with no request unanswered and its held commit sent, or has no
 * target of that name running (never started: the lease was given up
 * before the loop applied a list holding it, or in its takeover wait; or
 * stopped earlier with requests abandoned): the lease is released at once
 * instead of lapsing. Clean, unless requests
 * abandoned here or, in its takeover wait, its last holder's may still be
 * at the target: then released with requests abandoned (its next holder
 * waits a request timeout from the release). Ignored once the lease is
 * held again, released, or its validity at the give-up has passed. */
void dsp_lease_handed(void *arg, const char *tenant, const char *target);
/* Thread-safe (arg: the dsp_lease): until when (monotonic ms) a request to
 * the target may start under `epoch`: the lease's local validity when it is
 * held with that epoch and its takeover wait is over, else 0. The loop asks
 * before it starts a request, so a replica whose lease thread is slow to
 * give a lapsed lease up never posts past the lease. */
uint64_t dsp_lease_post_until(void *arg, const char *tenant, const char *target, uint64_t epoch);
/* Thread-safe: 1 when this replica holds the target's lease now (and
 * *epoch, if not NULL, receives its fencing epoch), else 0. */
int dsp_lease_owns(dsp_lease *l, const char *tenant, const char *target, uint64_t *epoch);
/* Thread-safe: 1 when this replica gave the target's lease up to balance
 * and it is still valid in the store (not renewed, not yet expired). */
int dsp_lease_handing_over(dsp_lease *l, const char *tenant, const char *target);
/* Called on the lease thread after a round that changed the held set. */
void dsp_lease_on_change(dsp_lease *l, void (*fn)(void *arg), void *arg);
/* Runs one round at once (tests, or after a target list change). */
void dsp_lease_poke(dsp_lease *l);
/* "<id>#<instance>", as sent to the store */
const char *dsp_lease_owner(const dsp_lease *l);
/* Targets held now. */
size_t dsp_lease_held(dsp_lease *l);
/* Prometheus: walhook_dispatcher_leases_held, walhook_dispatcher_leases_waiting,
 * walhook_dispatcher_replicas, walhook_target_lease_held{tenant,target},
 * walhook_target_lease_quiet_seconds{tenant,target} (seconds left of a held
 * lease's takeover wait). */
int dsp_lease_metrics(dsp_lease *l, wh_buf *out);
void dsp_lease_stop(dsp_lease *l);

#endif
