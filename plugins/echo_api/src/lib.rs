//! Placeholder: this backend is not written yet.
