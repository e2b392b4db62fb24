-- Flyway callback, run after every migrate: keeps the monthly partitions of every partitioned
-- table in place for the current month and ${partitions_ahead} months ahead. Tables that a
-- partial migration (a lower target) has not created yet are skipped.
DO $$
DECLARE
    t text;
BEGIN
    IF to_regprocedure('ensure_monthly_partitions(regclass,integer,integer)') IS NULL THEN
        RETURN;
    END IF;
    FOREACH t IN ARRAY ARRAY['user_behaviors', 'recommendation_requests', 'recommendation_results'] LOOP
        IF to_regclass(t) IS NOT NULL THEN
            PERFORM ensure_monthly_partitions(t::regclass, 0, ${partitions_ahead});
        END IF;
    END LOOP;
END;
$$;
