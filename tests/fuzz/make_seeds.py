#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/seeds/<target>/ (committed; rerun
after changing this file). pgoutput seeds come from the captured sessions in
tests/unit/data/ingestor/pgoutput_session.hex and pgoutput_origin.hex; IPC
seeds are protobuf messages encoded by hand (walhook.proto field numbers)."""
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = os.path.join(ROOT, "tests", "fuzz", "seeds")
SEP = b"|WH|"


def out(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def reset(target):
    shutil.rmtree(os.path.join(SEEDS, target), ignore_errors=True)


# ---- pgoutput -------------------------------------------------------------
def pgoutput():
    reset("fuzz_pgoutput")
    path = os.path.join(ROOT, "tests", "unit", "data", "ingestor", "pgoutput_session.hex")
    msgs = [bytes.fromhex(l.strip()) for l in open(path) if l.strip()]
    for i, m in enumerate(msgs):
        out("fuzz_pgoutput", "msg-%02d-%c" % (i, m[0]), m)
    out("fuzz_pgoutput", "session", SEP.join(msgs))
    rels = [m for m in msgs if m[:1] == b"R"]
    # each transaction preceded by every Relation, so changes resolve
    txn, n = [], 0
    for m in msgs:
        if m[:1] == b"R":
            continue
        txn.append(m)
        if m[:1] == b"C" or (m[:1] == b"M" and not txn[:-1]):
            out("fuzz_pgoutput", "txn-%02d" % n, SEP.join(rels + txn))
            n += 1
            txn = []
    if txn:
        out("fuzz_pgoutput", "txn-%02d" % n, SEP.join(rels + txn))
    # transactions with a replication origin ('O' after 'B')
    path = os.path.join(ROOT, "tests", "unit", "data", "ingestor", "pgoutput_origin.hex")
    omsgs = [bytes.fromhex(l.strip()) for l in open(path) if l.strip()]
    for i, m in enumerate(omsgs):
        if m[:1] == b"O":
            out("fuzz_pgoutput", "origin-msg-%02d" % i, m)
    out("fuzz_pgoutput", "origin-session", SEP.join(omsgs))


# ---- protobuf encoding ----------------------------------------------------
def varint(v):
    b = bytearray()
    v &= (1 << 64) - 1
    while True:
        c = v & 0x7F
        v >>= 7
        if v:
            b.append(c | 0x80)
        else:
            b.append(c)
            return bytes(b)


def f_var(num, v):
    return varint(num << 3) + varint(v)


def f_len(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint((num << 3) | 2) + varint(len(data)) + data


def event(lsn, seq, ts, json):
    return f_var(1, lsn) + f_var(2, seq) + f_var(3, ts) + f_len(4, json)


def position(lsn, seq):
    return f_var(1, lsn) + f_var(2, seq)


def ipc():
    reset("fuzz_ipc_store")
    js = b'{"id":"default:0/16B3748:0","tenant":"default","lsn":"0/16B3748","seq":0,"op":"insert"}'
    app = f_len(1, "default") + f_len(2, event(0x16B3748, 0, 1763773323123456, js)) + \
        f_len(2, event(0x16B3748, 1, 1763773323123456, js)) + f_var(3, 0x16B3780) + f_var(4, 1)
    out("fuzz_ipc_store", "req-append", f_len(1, app))
    out("fuzz_ipc_store", "req-append-empty", f_len(1, f_len(1, "t2") + f_var(3, 5)))
    out("fuzz_ipc_store", "req-append-bad", f_len(1, f_len(1, "default") + f_len(2, event(0, 0, 0, b""))))
    rd = f_len(1, "default") + f_len(2, "t0") + f_var(5, 100) + f_var(6, 65536)
    out("fuzz_ipc_store", "req-read", f_len(2, rd))
    rdf = f_len(1, "default") + f_len(2, "t0") + f_var(3, 1) + f_len(4, position(0x16B3748, 0)) + \
        f_var(5, 1) + f_var(7, 100)
    out("fuzz_ipc_store", "req-read-from", f_len(2, rdf))
    cm = f_len(1, "default") + f_len(2, "t0") + f_len(3, position(0x16B3748, 1))
    out("fuzz_ipc_store", "req-commit", f_len(3, cm))
    out("fuzz_ipc_store", "req-get-offset", f_len(4, f_len(1, "default") + f_len(2, "t0")))
    out("fuzz_ipc_store", "req-stats", f_len(5, b""))
    out("fuzz_ipc_store", "req-empty", b"")
    # replies (client side)
    metrics = ("# HELP walhook_store_events_stored_total Events stored.\n"
               "# TYPE walhook_store_events_stored_total counter\n"
               "walhook_store_events_stored_total 42\n"
               "# HELP walhook_up Up.\n# TYPE walhook_up gauge\n"
               'walhook_up{daemon="store"} 1\n')
    st = f_len(1, "store") + f_len(2, "running") + f_var(3, 1) + f_len(4, metrics)
    out("fuzz_ipc_store", "rep-stats", f_len(6, st))
    out("fuzz_ipc_store", "rep-error", f_var(1, 400) + f_len(2, "events[0].commit_lsn: must be > 0"))
    out("fuzz_ipc_store", "rep-append", f_len(3, f_var(1, 0x16B3780) + f_var(2, 2)))
    out("fuzz_ipc_store", "rep-read",
        f_len(4, f_len(1, event(0x16B3748, 0, 1763773323123456, js)) + f_len(2, position(1, 2))))
    out("fuzz_ipc_store", "rep-offset", f_len(5, f_len(1, position(0x16B3748, 1))))


# ---- config ---------------------------------------------------------------
def config():
    reset("fuzz_config")
    full = b'''tenant = "default";
data_dir = "/tmp/walhook-fuzz";
log_level = "info";
memory_budget_bytes = 0;
source = { dsn = "postgresql://postgres@127.0.0.1:5432/postgres"; slot = "walhook";
           publication = "walhook"; create_slot = true; tables = "public.t1,public.t2"; };
ingestor = { flush_bytes = 1048576; };
store = { workers = 4; };
admin = { listen = "127.0.0.1:8080"; };
targets = ( { name = "t0"; url = "http://127.0.0.1:9/hook"; },
            { name = "t1"; url = "https://example.invalid/x"; secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"; } );
'''
    out("fuzz_config", "full", full)
    out("fuzz_config", "minimal", b'source = { dsn = "dbname=x"; };\n')
    out("fuzz_config", "bad-type", b'store = { workers = "four"; };\n')
    out("fuzz_config", "unknown", b'bogus_key = 1;\n')
    out("fuzz_config", "targets-and-sets",
        b'tenant = "a";\0t0=http://127.0.0.1:9/a,http://127.0.0.1:9/b\0store.workers=8\0'
        b'source.dsn=host=127.0.0.1 port=5432\0dispatcher.retry_max_ms=1000\0\x05true')
    out("fuzz_config", "targets-plain", b'\0http://127.0.0.1:1/x,http://[::1]:2/y')
    out("fuzz_config", "targets-bad",
        b'targets = ( { name = "a"; url = "http://h:1/x\\r\\nX: 1"; },\n'
        b'  { name = "b"; url = "http://h/"; secret = "whsec_!!!"; } );\0a=ftp://h/,b=http://:9/')
    out("fuzz_config", "syntax",
        b'# comment = 1;\n/* block { */ tenant : "a" "b", // tail\n'
        b'source = { slot = "s"; dns = [1, 2]; };\nx = ( { y = 0x1F; }, ( 1 ) );\n')


# ---- values -----------------------------------------------------------------
def values():
    reset("fuzz_values")
    # index into the OID list of fuzz_values.c
    idx = {"bool": 0, "bytea": 1, "int8": 4, "text": 7, "json": 9, "float4": 10,
           "float8": 11, "date": 14, "timestamp": 15, "timestamptz": 16,
           "numeric": 17, "uuid": 18, "jsonb": 19}
    samples = [("bool", b"t"), ("bool", b"f"), ("bytea", b"\\x00ff10"), ("int8", b"-9223372036854775808"),
               ("text", 'h\u00e9 "q"\n'.encode()), ("json", b'{"a": [1, 2]}'), ("float4", b"1.5e-07"),
               ("float8", b"NaN"), ("float8", b"-Infinity"), ("date", b"2026-11-22"),
               ("timestamp", b"2026-11-22 01:02:03"), ("timestamptz", b"2026-11-22 01:02:03.123456+00"),
               ("timestamptz", b"infinity"), ("timestamptz", b"2026-11-22 01:02:03+05:30"),
               ("numeric", b"12.50"), ("uuid", b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
               ("jsonb", b"[]")]
    for i, (t, v) in enumerate(samples):
        out("fuzz_values", "%02d-%s" % (i, t), bytes([idx[t]]) + v)
    out("fuzz_values", "raw-oid", b"\xff\x00\x00\x06\xa4" + b"3.14")
    # arrays and vectors (indices 20.. of the OID list)
    arrays = [(20, b'{"a b",NULL,"","x\\"y\\\\z",\xc3\xa9,plain}'), (21, b"[0:1]={{1,2},{3,NULL}}"),
              (22, b'{"2026-11-22 01:02:03+00",infinity}'), (23, b'{"\\\\x00ff",NULL}'),
              (24, b"{(1,1),(0,0);(2,2),(1,1)}"), (25, b"{1.50,NaN}"), (26, b"{1e+300,-Infinity}"),
              (27, b"{t,f}"), (28, b"1 2 3"), (29, b""), (30, b'{"1 2",3}'), (31, b'{"{\\"a\\": 1}"}'),
              (21, b"{}")]
    for i, (k, v) in enumerate(arrays):
        out("fuzz_values", "array-%02d" % i, bytes([k]) + v)
    # descriptors (0xE0 + index into vts of fuzz_values.c)
    typed = [(0, b'(1,"a b",ok,"{1,2}","2026-11-22 01:02:03+00","\\\\x01")'),
             (1, b'{"(1,x,,,,)",NULL}'),
             (2, b'("(1,x,ok,{3},,)","{""(2,\\\\""q\\\\"",,,,)"",NULL}")'),
             (3, b'"a"=>"1", "b"=>NULL, "c d"=>"x\\"y"'), (4, b'{"\\"k\\"=>\\"v\\"",NULL}'),
             (5, b'{"{1,2}",NULL}'), (6, b"{sad;ok;NULL}"), (7, b"()")]
    for i, (k, v) in enumerate(typed):
        out("fuzz_values", "typed-%02d" % i, bytes([0xE0 + k]) + v)
    # catalog rows: an array of a composite (int, enum) and a domain over it
    rows = bytes([0xDF, 5,
                  0, 0, 0x80 | 5, 0, 0, 0,   # 10000 b: array of 10005
                  5, 1, 0, 0, 1, 1,          # 10005 c: a int
                  5, 1, 0, 0, 1 | 2 * 2, 6,  # 10005 c: "b c" 10006
                  6, 3, 0, 0, 0, 0,          # 10006 e
                  7, 2, 0, 4, 0, 0])         # 10007 d over 10000
    out("fuzz_values", "catalog-rows", rows + b'{"(1,ok)",NULL}')


pgoutput()
ipc()
config()
values()
