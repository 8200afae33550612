-- Runs once, when the postgres container initialises its volume: the least
-- privilege setup that `walhook setup --print-sql --tables public.orders`
-- prints, plus a demo table. walhook connects as `walhook` (no superuser).
CREATE TABLE public.orders (id bigserial PRIMARY KEY, note text, created_at timestamptz DEFAULT now());
CREATE ROLE walhook WITH LOGIN REPLICATION PASSWORD 'walhook';
GRANT CONNECT ON DATABASE postgres TO walhook;
CREATE PUBLICATION walhook FOR TABLE public.orders;
