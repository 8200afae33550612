#!/usr/bin/env bash
# An UPDATE whose TOASTed column is unchanged ('u'), sent again after an
# ingestor SIGKILL (slot_policy track, the receiver down: not confirmed),
# after a later transaction, already stored, replaced that column's value.
# The new ingestor process cannot render the old value any more (the
# store's TOAST cache keeps one value per column, the later one, which is
# too new for this change): the resent event lists the column as
# "unchanged" where the first send carried its value. The store keeps the
# event it stored (an event's id names one content), counts the difference
# (walhook_store_resends_differ_total) and logs it; the target gets the
# value (from the store: the dispatcher is restarted). Before, the resend
# replaced the stored event. (tests/lib/toast_resend.sh;
# test_toast_resend_store: the store restarted too.)
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/stream_track.sh"
source "$(dirname "$0")/../lib/toast_resend.sh"
wh_toast_resend
