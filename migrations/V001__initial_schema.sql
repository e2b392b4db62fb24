-- V001: users, items and item statistics.
--
-- Identifiers are UUIDs from gen_random_uuid() (built into PostgreSQL 13+; no uuid-ossp).
-- Every table with updated_at keeps it current through the set_updated_at() trigger.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE users (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name          VARCHAR(100) NOT NULL,
    email         VARCHAR(255) NOT NULL,
    password_hash VARCHAR(255),
    age           SMALLINT CHECK (age BETWEEN 0 AND 150),
    gender        VARCHAR(20) CHECK (gender IN ('male', 'female', 'other', 'unknown')),
    country       VARCHAR(64),
    city          VARCHAR(100),
    metadata      JSONB NOT NULL DEFAULT '{}',
    status        VARCHAR(20) NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'inactive', 'banned', 'deleted')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);
COMMENT ON TABLE users IS 'People who receive recommendations.';

CREATE TABLE items (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    type        VARCHAR(20) NOT NULL CHECK (type IN ('movie', 'product', 'article', 'video')),
    title       VARCHAR(500) NOT NULL,
    description TEXT,
    category    VARCHAR(100),
    subcategory VARCHAR(100),
    tags        TEXT[] NOT NULL DEFAULT '{}',
    -- Hierarchical semantic ID from the generative retrieval model, coarse to fine.
    semantic_id INTEGER[],
    metadata    JSONB NOT NULL DEFAULT '{}',
    status      VARCHAR(20) NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'inactive', 'deleted')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE items IS 'Things that can be recommended: movies, products, articles, videos.';

CREATE TABLE item_stats (
    item_id        UUID PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
    view_count     BIGINT NOT NULL DEFAULT 0,
    click_count    BIGINT NOT NULL DEFAULT 0,
    like_count     BIGINT NOT NULL DEFAULT 0,
    dislike_count  BIGINT NOT NULL DEFAULT 0,
    share_count    BIGINT NOT NULL DEFAULT 0,
    purchase_count BIGINT NOT NULL DEFAULT 0,
    rating_count   BIGINT NOT NULL DEFAULT 0,
    rating_sum     NUMERIC(14, 2) NOT NULL DEFAULT 0,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE item_stats IS 'Lifetime interaction counters per item.';

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER items_set_updated_at BEFORE UPDATE ON items
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER item_stats_set_updated_at BEFORE UPDATE ON item_stats
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Fuzzy search on names and titles; containment queries on tags and metadata.
CREATE INDEX users_name_trgm ON users USING gin (name gin_trgm_ops);
CREATE INDEX items_title_trgm ON items USING gin (title gin_trgm_ops);
CREATE INDEX items_tags_gin ON items USING gin (tags);
CREATE INDEX items_metadata_gin ON items USING gin (metadata jsonb_path_ops);
CREATE INDEX items_category ON items (category, subcategory);
