//! The `redis` section of the bootstrap manifest against the stack's server.
