# Shared by the tests of transactions sent again (test_stream_resend.sh,
# test_schema_pending.sh); source it after helpers.sh.

# PostgreSQL with logical_decoding_work_mem 64kB (a transaction of a few
# thousand rows is streamed), tables t (id, note) and w (id), a receiver on
# PORT writing $WH_TMP/got.jsonl, and walhook up (admin on APORT, config in
# CONF) with streaming on and slot_policy track: nothing is confirmed past
# what the target took, so PostgreSQL sends it again after a reconnect.
wh_stream_track_up() {
    wh_pipeline_setup
    pg_psql -c "ALTER SYSTEM SET logical_decoding_work_mem = '64kB'" -c "SELECT pg_reload_conf()" \
        -c "CREATE TABLE t (id int PRIMARY KEY, note text)" \
        -c "CREATE TABLE w (id int PRIMARY KEY)" >/dev/null || wh_fail "cannot set up"
    wh_up_receiver 'streaming = true; slot_policy = "track";' \
        'dispatcher = { retry_max_ms = 500; };'
}
