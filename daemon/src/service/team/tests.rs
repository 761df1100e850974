//! Unit tests of the team methods and the sync entry points.
