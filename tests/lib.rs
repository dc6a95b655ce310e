//! Helpers shared by the end-to-end tests (binary paths, skip messages).
