//! cascade-data (being written)
