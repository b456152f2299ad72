//! The exchange engine. See ARCHITECTURE.md for the module map.
pub mod book;
pub mod settle;
pub mod spot;
