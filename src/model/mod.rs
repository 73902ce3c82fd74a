//! The pure model at the bottom of the house: what an alert, a notification,
//! a matcher, a silence, a flapping state, a digest and a contact are, with
//! the rules that follow from them alone. Nothing here reads the clock, the
//! config, the database or the network; every other layer builds on it.

pub mod alert;
pub mod contacts;
pub mod digest;
pub mod duration;
pub mod flapping;
pub mod matcher;
pub mod notification;
pub mod silence;
