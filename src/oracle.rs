//! Oracles shared by the fuzz targets and the corpus-replay test: each takes
//! arbitrary bytes and panics if the code under test breaks a promise.
