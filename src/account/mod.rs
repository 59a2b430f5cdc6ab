//! Accounts: the identifiers a person signs in with, creating people, and
//! (in later issues) registration and self-service.
pub mod identifiers;
pub mod recovery;
pub mod registration;
pub mod selfservice;
pub mod senders;
pub mod users;
