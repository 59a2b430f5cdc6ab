//! Message catalogs by area, one file each so that work on different pages
//! does not collide; `web/i18n.rs` joins them.
pub mod account;
pub mod email;
pub mod factors;
pub mod guardian;
pub mod logout;
pub mod realname;
