-- V005: embeddings in PostgreSQL with pgvector (dimension 256, as the Milvus collections).
--
-- `recommend-db init --install-extensions` installs the extension as a superuser beforehand, so
-- that the migrations can run as the (non-superuser) owner role.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE item_embeddings (
    item_id        UUID PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
    embedding      vector(256) NOT NULL,
    model_version  VARCHAR(50) NOT NULL,
    embedding_type VARCHAR(50) NOT NULL DEFAULT 'content',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE user_embeddings (
    user_id              UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    embedding            vector(256) NOT NULL,
    long_term_embedding  vector(256),
    short_term_embedding vector(256),
    behavior_count       INTEGER NOT NULL DEFAULT 0 CHECK (behavior_count >= 0),
    model_version        VARCHAR(50),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TRIGGER item_embeddings_set_updated_at BEFORE UPDATE ON item_embeddings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER user_embeddings_set_updated_at BEFORE UPDATE ON user_embeddings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Cosine distance, as the embeddings are compared for similarity (ORDER BY embedding <=> $1).
CREATE INDEX item_embeddings_hnsw ON item_embeddings
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX user_embeddings_hnsw ON user_embeddings
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX user_embeddings_long_term_hnsw ON user_embeddings
    USING hnsw (long_term_embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX item_embeddings_model ON item_embeddings (model_version, embedding_type);
