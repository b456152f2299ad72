-- The epoch check of a leader's write transaction, raising instead of counting rows, so a
-- leader can send BEGIN, the fence, its writes and COMMIT in one pipelined round trip: a
-- superseded epoch aborts the transaction and the COMMIT becomes a rollback.
CREATE OR REPLACE FUNCTION fence_or_raise(p_key text, p_epoch bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE partitions SET last_commit_at = now() WHERE partition_key = p_key AND epoch = p_epoch;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'partition % has a newer leader than epoch %', p_key, p_epoch USING ERRCODE = 'EF001';
    END IF;
END
$$;
