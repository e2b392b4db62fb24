-- V002: user behaviour events, partitioned by month, and user profiles.
--
-- Event tables carry no foreign keys: they take millions of writes a day, and a key check per
-- row would halve ingestion. Their primary keys include the partition key, as PostgreSQL
-- requires for partitioned tables.
--
-- Partitions: ensure_monthly_partitions() creates one partition per calendar month (UTC). The
-- afterMigrate callback and `recommend-db partitions` keep the current month and a few ahead
-- in place. There is no DEFAULT partition on purpose: a row dated outside every partition is
-- refused with "no partition of relation ... found for row" instead of landing in a catch-all
-- partition that would block creating the month's real partition later.

CREATE TABLE user_behaviors (
    id          UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id     UUID NOT NULL,
    item_id     UUID NOT NULL,
    action      VARCHAR(20) NOT NULL CHECK (action IN (
                    'view', 'click', 'like', 'dislike', 'buy', 'share', 'rating',
                    'add_to_cart', 'comment', 'skip')),
    value       NUMERIC(12, 2),
    context     JSONB NOT NULL DEFAULT '{}',
    session_id  VARCHAR(64),
    device_type VARCHAR(20) CHECK (device_type IN ('mobile', 'desktop', 'tablet', 'tv', 'other')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
COMMENT ON TABLE user_behaviors IS 'Interaction events; monthly partitions named user_behaviors_yYYYYmMM.';

CREATE TABLE user_profiles (
    user_id              UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    preferred_categories TEXT[] NOT NULL DEFAULT '{}',
    preferred_tags       TEXT[] NOT NULL DEFAULT '{}',
    features             JSONB NOT NULL DEFAULT '{}',
    total_actions        BIGINT NOT NULL DEFAULT 0,
    last_active_at       TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TRIGGER user_profiles_set_updated_at BEFORE UPDATE ON user_profiles
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The partitions of a monthly-partitioned table with their ranges, oldest first.
CREATE OR REPLACE FUNCTION monthly_partitions(parent regclass)
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT c.relname::text,
           (m)[1]::timestamptz,
           (m)[2]::timestamptz
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                    'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS m
    WHERE i.inhparent = parent
    ORDER BY 2;
$$;

-- Creates the monthly partitions of `parent` from `months_back` months before the current
-- month (UTC) to `months_ahead` months after it; returns each month's partition and whether it
-- was created now. Safe to call concurrently and repeatedly.
CREATE OR REPLACE FUNCTION ensure_monthly_partitions(parent regclass, months_back integer DEFAULT 0,
                                                     months_ahead integer DEFAULT 3)
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    parent_schema text;
    parent_name   text;
    first_month   timestamptz;
    i             integer;
BEGIN
    IF months_back NOT BETWEEN 0 AND 1200 OR months_ahead NOT BETWEEN 0 AND 120 THEN
        RAISE EXCEPTION 'ensure_monthly_partitions: months_back must be 0..1200 and months_ahead 0..120 (got %, %)',
            months_back, months_ahead;
    END IF;
    SELECT n.nspname, c.relname INTO parent_schema, parent_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = parent AND c.relkind = 'p';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ensure_monthly_partitions: % is not a partitioned table', parent;
    END IF;
    -- One caller at a time per table: two creating the same month would collide.
    PERFORM pg_advisory_xact_lock(hashtext('ensure_monthly_partitions'), hashtext(parent::text));
    first_month := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    FOR i IN -months_back .. months_ahead LOOP
        range_start := first_month + make_interval(months => i);
        range_end := range_start + interval '1 month';
        partition_name := format('%s_y%sm%s', parent_name,
                                 to_char(range_start AT TIME ZONE 'UTC', 'YYYY'),
                                 to_char(range_start AT TIME ZONE 'UTC', 'MM'));
        created := to_regclass(format('%I.%I', parent_schema, partition_name)) IS NULL;
        IF created THEN
            EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
                           parent_schema, partition_name, parent_schema, parent_name,
                           range_start, range_end);
        END IF;
        RETURN NEXT;
    END LOOP;
END;
$$;

SELECT count(*) FROM ensure_monthly_partitions('user_behaviors', 0, ${partitions_ahead});
