//! The app's composition: the whole config file, and what it builds
//! (channels, the planner over them) and swaps while serving (reload).

mod config;
pub mod reload;

pub use config::Config;
