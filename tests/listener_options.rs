//! (being written)
mod support;
