//! Tests of this topic (not written yet).
