//! End-to-end tests: the real server on a free port, driven by the
//! `openidconnect` crate as a portal would use it and by a cookie-keeping
//! HTTP client as a browser. One test binary keeps build times down.
mod account;
mod admin;
mod audit;
mod browser;
mod cli;
mod costs;
mod deploy;
mod enterprise;
mod factors;
mod flow;
mod guardian;
mod harness;
mod housekeeping;
mod keys;
mod logout;
mod negative;
mod nodes;
mod otp;
mod pages;
mod proxy;
mod realname;
mod redis_modes;
mod register;
mod registry;
mod rp_logout;
mod scaleout;
mod steps;
mod transport;
mod webdriver;
