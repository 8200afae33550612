#!/usr/bin/env bash
# deploy/monitoring: the alerting rules pass `promtool check rules` and their
# unit tests (`promtool test rules`); the Grafana dashboard is valid JSON with
# a query in every panel; every metric name the rules and the dashboard use
# is one walhook exports (found in the sources).
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MON="$ROOT/deploy/monitoring"
command -v promtool >/dev/null || wh_fail "promtool is missing (Debian package prometheus: scripts/install-deps.sh)"
command -v jq >/dev/null || wh_fail "jq is missing (scripts/install-deps.sh)"
promtool check rules "$MON/walhook-alerts.yml" || wh_fail "promtool check rules failed"
(cd "$MON" && promtool test rules walhook-alerts.test.yml) || wh_fail "promtool test rules failed"
jq -e '.title == "walhook" and (.panels | length) >= 10 and
       all(.panels[]; (.targets | length) > 0 and all(.targets[]; (.expr | length) > 0))' \
    "$MON/grafana-dashboard.json" >/dev/null || wh_fail "grafana-dashboard.json: invalid or a panel without a query"
alerts=$(grep -c '^ *- alert:' "$MON/walhook-alerts.yml")
for a in WalhookDaemonDown WalhookSlotLagHigh WalhookSlotWalNotReserved WalhookTargetFailing \
         WalhookTargetPaused WalhookBacklogAgeHigh WalhookDeadLettersGrowing WalhookIngestorError \
         WalhookBackpressureRed WalhookTargetNeedsSnapshot WalhookNotReady \
         WalhookIngestorNotStreaming WalhookSlotQueryFailing WalhookReplicationLagStale \
         WalhookStoreTenantEndUnreadable; do
    grep -q "alert: $a\$" "$MON/walhook-alerts.yml" || wh_fail "no alert $a"
    grep -q "alertname: $a\$" "$MON/walhook-alerts.test.yml" || wh_fail "alert $a has no unit test"
done
# metric names used must exist in the sources (histograms by their base name)
PENDING="" # names exported elsewhere than services/ and common/ (none today)
names=$( { grep -ho 'expr: .*' "$MON/walhook-alerts.yml"; jq -r '.panels[].targets[].expr' "$MON/grafana-dashboard.json"; } |
    grep -oE '\b(walhook|process)_[a-z_]+' | sed -E 's/_(bucket|sum|count)$//' | sort -u)
for n in $names; do
    grep -qw -- "$n" <<<"$PENDING" && continue
    grep -rqF -- "\"$n" "$ROOT/services" "$ROOT/common" || wh_fail "metric $n (monitoring) is not exported by walhook"
done
wh_pass "$alerts alerts checked and unit-tested, dashboard $(jq '.panels | length' "$MON/grafana-dashboard.json") panels, $(wc -w <<<"$names") metric names known"
