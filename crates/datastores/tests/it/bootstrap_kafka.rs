//! The `kafka` section of the bootstrap manifest against the stack's server.
