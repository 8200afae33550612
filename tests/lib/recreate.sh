# Shared by the tests of targets deleted and created again while a request
# is in flight (test_recreate_inflight.sh, test_recreate_tenant_inflight.sh);
# source it after helpers.sh. RP: the slow receiver's port; OUT: its
# received file; N: the rows each round inserts after the creation.

# the receiver's summary line, and its count of overlapping POSTs
summary() { curl -fsS --max-time 3 "http://127.0.0.1:$RP/" 2>/dev/null; }
overlaps() { summary | sed -n 's/.*stored, \([0-9]*\) overlapping.*/\1/p'; }
# POSTs at the receiver now (/reset-max sets "max concurrent" to them)
in_flight() {
    curl -fsS --max-time 3 "http://127.0.0.1:$RP/reset-max" 2>/dev/null |
        sed -n 's/.*, \([0-9]*\) max concurrent.*/\1/p'
}
posting() { [ "$(in_flight)" -ge 1 ] 2>/dev/null; }
has() { grep -q "\"$1\"" "$OUT" 2>/dev/null; }
# the number of the first line of OUT holding value $1 (empty: none)
line_of() { grep -n "\"$1" "$OUT" 2>/dev/null | head -n 1 | cut -d: -f1 || true; }
new_count() { grep -o "\"new-$1-[0-9]*\"" "$OUT" 2>/dev/null | sort -u | wc -l; }
new_all() { [ "$(new_count "$1")" -ge "$N" ]; }
