//! Training LGSS.

pub mod adam;
