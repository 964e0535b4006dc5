-- Experiment (issue #17): do physical (ctid-range) batches make the session
-- backfill faster than id-keyset batches? Not part of make bench.
--
--   createdb exp && psql -X -d exp -f benches/experiments/session_backfill_physical.sql
--
-- On a 2-core machine, PostgreSQL 15, default shared_buffers, 200k rows
-- (2026-12-05): single UPDATE 0.96 s; v1 (id keyset, SKIP LOCKED, UPDATE by
-- ids) 2.24 s; v2 (ctid ranges, SKIP LOCKED, UPDATE by ctid) 2.58 s; v3
-- (ctid ranges, UPDATE ... FROM, no row locks) 2.26 s. Physical order did
-- not pay: the per-row probes into the candidates dominate, and a
-- per-range UPDATE ... FROM hashes the whole candidates table each time.
-- The block count per range (77) was sized for fresh pages; after a reset
-- the table is bloated and ranges hold fewer rows, which also hurts v2/v3.
\timing on
DROP TABLE IF EXISTS s, c;
CREATE TABLE c (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), organization_id uuid);
INSERT INTO c (organization_id) SELECT (SELECT gen_random_uuid() FROM generate_series(1,1) LIMIT 1) FROM generate_series(1, 200000);
UPDATE c SET organization_id = ('00000000-0000-0000-0000-' || lpad((abs(hashtext(id::text)) % 1000)::text, 12, '0'))::uuid;
CREATE TABLE s (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), candidate_id uuid, session_token text, organization_id uuid, updated_at timestamptz DEFAULT now());
INSERT INTO s (candidate_id, session_token) SELECT id, md5(id::text) FROM c;
VACUUM ANALYZE c, s;
-- id keyset, FOR UPDATE SKIP LOCKED pick, UPDATE by ids, COMMIT per batch
CREATE OR REPLACE PROCEDURE v1(n int) LANGUAGE plpgsql AS $$
DECLARE after uuid; ids uuid[];
BEGIN
  LOOP
    SELECT array_agg(x.id ORDER BY x.id) INTO ids FROM (
      SELECT t.id FROM s t WHERE (after IS NULL OR t.id > after) AND t.organization_id IS NULL
        AND EXISTS (SELECT 1 FROM c WHERE c.id = t.candidate_id AND c.organization_id IS NOT NULL)
      ORDER BY t.id LIMIT n FOR UPDATE SKIP LOCKED) x;
    EXIT WHEN ids IS NULL;
    UPDATE s t SET organization_id = (SELECT c.organization_id FROM c WHERE c.id = t.candidate_id) WHERE t.id = ANY(ids);
    after := ids[array_upper(ids,1)];
    COMMIT;
  END LOOP;
END $$;
-- ctid ranges: pick FOR UPDATE SKIP LOCKED in a block range, UPDATE by ctid
CREATE OR REPLACE PROCEDURE v2(blocks int) LANGUAGE plpgsql AS $$
DECLARE b bigint := 0; last bigint; tids tid[];
BEGIN
  SELECT pg_relation_size('s') / 8192 INTO last;
  WHILE b <= last LOOP
    SELECT array_agg(t.ctid) INTO tids FROM (
      SELECT t.ctid FROM s t WHERE t.ctid >= format('(%s,0)', b)::tid AND t.ctid < format('(%s,0)', b + blocks)::tid
        AND t.organization_id IS NULL
        AND EXISTS (SELECT 1 FROM c WHERE c.id = t.candidate_id AND c.organization_id IS NOT NULL)
      FOR UPDATE SKIP LOCKED) t;
    IF tids IS NOT NULL THEN
      UPDATE s t SET organization_id = (SELECT c.organization_id FROM c WHERE c.id = t.candidate_id) WHERE t.ctid = ANY(tids);
    END IF;
    b := b + blocks;
    COMMIT;
  END LOOP;
END $$;
-- ctid ranges: one UPDATE ... FROM per range (waits on locked rows)
CREATE OR REPLACE PROCEDURE v3(blocks int) LANGUAGE plpgsql AS $$
DECLARE b bigint := 0; last bigint;
BEGIN
  SELECT pg_relation_size('s') / 8192 INTO last;
  WHILE b <= last LOOP
    UPDATE s t SET organization_id = c.organization_id FROM c
     WHERE t.ctid >= format('(%s,0)', b)::tid AND t.ctid < format('(%s,0)', b + blocks)::tid
       AND t.organization_id IS NULL AND c.id = t.candidate_id AND c.organization_id IS NOT NULL;
    b := b + blocks;
    COMMIT;
  END LOOP;
END $$;
UPDATE s t SET organization_id = c.organization_id FROM c WHERE t.candidate_id = c.id AND t.organization_id IS NULL;
UPDATE s SET organization_id = NULL; VACUUM ANALYZE s;
CALL v1(5000);
UPDATE s SET organization_id = NULL; VACUUM ANALYZE s;
CALL v2(77);
UPDATE s SET organization_id = NULL; VACUUM ANALYZE s;
CALL v3(77);
