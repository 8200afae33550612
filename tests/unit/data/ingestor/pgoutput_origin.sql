-- Workload captured into pgoutput_origin.hex (slot 'cap', publication
-- cap_pub FOR ALL TABLES, proto_version 1), PostgreSQL 15.18: transactions
-- with and without a replication origin. With an origin pgoutput sends an
-- Origin message ('O': the origin's commit LSN, the origin's name) right
-- after Begin; the commit time is the origin's (xact_setup's timestamp).
CREATE TABLE o1 (id int primary key, v text);
CREATE PUBLICATION cap_pub FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('cap', 'pgoutput');
SELECT pg_replication_origin_create('peer "b"');
INSERT INTO o1 VALUES (1, 'local');                   -- no origin
-- a new session:
SELECT pg_replication_origin_session_setup('peer "b"');
BEGIN;
SELECT pg_replication_origin_xact_setup('0/ABCDEF0', '2026-11-22 01:02:03+00');
INSERT INTO o1 VALUES (2, 'from peer');               -- 'O' after 'B'
UPDATE o1 SET v = 'x' WHERE id = 1;
COMMIT;
INSERT INTO o1 VALUES (3, 'peer no lsn');             -- 'O' (the session's)
SELECT pg_replication_origin_session_reset();
INSERT INTO o1 VALUES (4, 'local again');             -- no origin
