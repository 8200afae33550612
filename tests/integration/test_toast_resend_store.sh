#!/usr/bin/env bash
# test_toast_resend with the store SIGKILLed too, after the events are
# durable and before the ingestor: PostgreSQL resends to a store process
# that did not write them (at or below the tenant's last event when it
# opened). That store compared a resent event with the stored one only at
# positions it wrote itself, so the resend, rendered otherwise, silently
# replaced the stored event: nothing counted, and the target got the
# UPDATE without its doc. It must keep the stored event, count the
# difference and log it, as without the restart.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
source "$(dirname "$0")/../lib/stream_track.sh"
source "$(dirname "$0")/../lib/toast_resend.sh"
wh_toast_resend store
