-- V003: recommendation requests and results (partitioned by month), and A/B testing.

CREATE TABLE recommendation_requests (
    id            UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id       UUID,
    scene         VARCHAR(50) NOT NULL,
    context       JSONB NOT NULL DEFAULT '{}',
    model_version VARCHAR(50),
    experiment_id UUID,
    variant       VARCHAR(50),
    latency_ms    INTEGER CHECK (latency_ms >= 0),
    num_results   INTEGER CHECK (num_results >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
COMMENT ON TABLE recommendation_requests IS 'One row per call to the recommender; user_id is NULL for anonymous visitors.';

CREATE TABLE recommendation_results (
    id         UUID NOT NULL DEFAULT gen_random_uuid(),
    request_id UUID NOT NULL,
    user_id    UUID,
    item_id    UUID NOT NULL,
    position   SMALLINT NOT NULL CHECK (position >= 0),
    score      REAL,
    source     VARCHAR(50),
    clicked    BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
COMMENT ON TABLE recommendation_results IS 'The items returned for each request, in order.';

CREATE TABLE experiments (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name               VARCHAR(100) NOT NULL UNIQUE,
    description        TEXT,
    status             VARCHAR(20) NOT NULL DEFAULT 'draft'
                       CHECK (status IN ('draft', 'running', 'paused', 'completed')),
    traffic_percentage NUMERIC(5, 2) NOT NULL DEFAULT 100 CHECK (traffic_percentage BETWEEN 0 AND 100),
    variants           JSONB NOT NULL DEFAULT '[]',
    start_at           TIMESTAMPTZ,
    end_at             TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (end_at IS NULL OR start_at IS NULL OR end_at > start_at)
);
CREATE TRIGGER experiments_set_updated_at BEFORE UPDATE ON experiments
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE experiment_metrics (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    experiment_id UUID NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    variant       VARCHAR(50) NOT NULL,
    metric_name   VARCHAR(100) NOT NULL,
    metric_value  DOUBLE PRECISION NOT NULL,
    sample_size   BIGINT CHECK (sample_size >= 0),
    metric_date   DATE NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (experiment_id, variant, metric_name, metric_date)
);

CREATE TABLE user_experiment_assignments (
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    experiment_id UUID NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    variant       VARCHAR(50) NOT NULL,
    assigned_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, experiment_id)
);

SELECT count(*) FROM ensure_monthly_partitions('recommendation_requests', 0, ${partitions_ahead});
SELECT count(*) FROM ensure_monthly_partitions('recommendation_results', 0, ${partitions_ahead});
