-- V004: indexes for the read paths, and materialized views of popularity and activity.
--
-- Indexes on the partitioned parents are created on every partition, present and future.
-- BRIN suits append-only time series: a few kilobytes per partition.

CREATE INDEX user_behaviors_created_brin ON user_behaviors USING brin (created_at);
CREATE INDEX user_behaviors_user_time ON user_behaviors (user_id, created_at DESC);
CREATE INDEX user_behaviors_item_time ON user_behaviors (item_id, created_at DESC);
CREATE INDEX user_behaviors_session ON user_behaviors (session_id);
-- Conversions are rare and queried often: a partial index keeps them cheap.
CREATE INDEX user_behaviors_conversions ON user_behaviors (item_id, created_at)
    WHERE action IN ('buy', 'like', 'add_to_cart');

CREATE INDEX recommendation_requests_created_brin ON recommendation_requests USING brin (created_at);
CREATE INDEX recommendation_requests_user_time ON recommendation_requests (user_id, created_at DESC);
CREATE INDEX recommendation_requests_context_gin ON recommendation_requests USING gin (context jsonb_path_ops);
CREATE INDEX recommendation_results_created_brin ON recommendation_results USING brin (created_at);
CREATE INDEX recommendation_results_request ON recommendation_results (request_id);
CREATE INDEX recommendation_results_clicked ON recommendation_results (item_id, created_at) WHERE clicked;

CREATE INDEX users_metadata_gin ON users USING gin (metadata jsonb_path_ops);
CREATE INDEX users_active_created ON users (created_at) WHERE status = 'active';
CREATE INDEX items_semantic_id_gin ON items USING gin (semantic_id);
CREATE INDEX items_active_category ON items (category, created_at DESC) WHERE status = 'active';
CREATE INDEX user_profiles_categories_gin ON user_profiles USING gin (preferred_categories);
CREATE INDEX user_profiles_features_gin ON user_profiles USING gin (features jsonb_path_ops);
CREATE INDEX experiments_running ON experiments (start_at) WHERE status = 'running';

-- Item popularity over the last 30 days: the "hot" candidates of the recall stage.
CREATE MATERIALIZED VIEW item_popularity AS
SELECT b.item_id,
       count(*) FILTER (WHERE b.action = 'view')  AS views,
       count(*) FILTER (WHERE b.action = 'click') AS clicks,
       count(*) FILTER (WHERE b.action = 'like')  AS likes,
       count(*) FILTER (WHERE b.action = 'buy')   AS purchases,
       count(*) FILTER (WHERE b.action = 'share') AS shares,
       count(DISTINCT b.user_id)                  AS unique_users,
       (count(*) FILTER (WHERE b.action = 'view')
        + 3 * count(*) FILTER (WHERE b.action = 'click')
        + 5 * count(*) FILTER (WHERE b.action IN ('like', 'share'))
        + 10 * count(*) FILTER (WHERE b.action = 'buy'))::double precision AS score,
       max(b.created_at)                          AS last_interaction_at
FROM user_behaviors b
WHERE b.created_at >= now() - interval '30 days'
GROUP BY b.item_id;
CREATE UNIQUE INDEX item_popularity_item ON item_popularity (item_id);
CREATE INDEX item_popularity_score ON item_popularity (score DESC);

-- User activity over the last 30 days.
CREATE MATERIALIZED VIEW user_activity AS
SELECT b.user_id,
       count(*)                     AS events,
       count(DISTINCT b.session_id) AS sessions,
       count(DISTINCT b.item_id)    AS distinct_items,
       count(*) FILTER (WHERE b.action = 'buy') AS purchases,
       min(b.created_at)            AS first_active_at,
       max(b.created_at)            AS last_active_at
FROM user_behaviors b
WHERE b.created_at >= now() - interval '30 days'
GROUP BY b.user_id;
CREATE UNIQUE INDEX user_activity_user ON user_activity (user_id);

-- Refreshes both views without blocking readers (CONCURRENTLY needs the unique indexes above).
CREATE OR REPLACE FUNCTION refresh_recommendation_views() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY item_popularity;
    REFRESH MATERIALIZED VIEW CONCURRENTLY user_activity;
END;
$$;
