-- Workload captured into pgoutput_session.hex (slot 'cap', publication
-- cap_pub FOR ALL TABLES, proto_version 1, messages true), PostgreSQL 15.20.
CREATE TABLE t1 (id int primary key, note text, n numeric, f float8, b bool, j jsonb, ts timestamptz, d date, u uuid, by bytea, big text, i8 bigint, r real, tsn timestamp);
CREATE TABLE tfull (id int, v text);
ALTER TABLE tfull REPLICA IDENTITY FULL;
CREATE PUBLICATION cap_pub FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('cap', 'pgoutput');
INSERT INTO t1 VALUES (1, E'h\u00e9 "q"\n', 12.50, 'NaN', true, '{"a": [1, 2]}', '2026-11-22 01:02:03.123456+00', '2026-11-22', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff10', (SELECT string_agg(md5(g::text), '') FROM generate_series(1,500) g), -9223372036854775808, 1.5e-7, '2026-11-22 01:02:03');
UPDATE t1 SET note = 'upd' WHERE id = 1;          -- big: unchanged TOAST 'u'
UPDATE t1 SET id = 2 WHERE id = 1;                 -- old key tuple 'K'
DELETE FROM t1 WHERE id = 2;                       -- 'K'
INSERT INTO t1 (id) VALUES (3);                    -- NULLs
INSERT INTO tfull VALUES (1, 'a');
UPDATE tfull SET v = 'b';                          -- REPLICA IDENTITY FULL: 'O'
DELETE FROM tfull;                                 -- 'O'
TRUNCATE t1, tfull RESTART IDENTITY CASCADE;
SELECT pg_logical_emit_message(true, 'wh', 'hello');
SELECT pg_logical_emit_message(false, 'nt', '\x0001'::bytea);
