//! Who the client is behind reverse proxies. A request's client address is
//! its peer address unless the peer is a trusted proxy (`trusted_proxies`);
//! only then is the forwarded header read, right to left, skipping the
//! proxies we trust, and the first address we do not trust is the client.
//! Everything to its left was written by that untrusted party and is
//! ignored. A malformed entry makes the header worthless: the peer is used.
//! With no trusted proxies, no forwarded header is ever read.
//!
//! The issuer and every URL civid builds come from `public_url`, never from
//! `Host`, `X-Forwarded-Host` or `X-Forwarded-Proto`.
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address
/// (`127.0.0.1` is `127.0.0.1/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        // Peers are compared as IPv4 when IPv4-mapped: so are such blocks.
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Ok(Cidr { addr: IpAddr::V4(v4), prefix: prefix - 96 });
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which header the trusted proxies write (`forwarded_header`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, most load balancers).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    #[serde(rename = "forwarded")]
    Forwarded,
}

impl ForwardedHeader {
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// The client's address. `values` are the lines of the configured forwarded
/// header in the order received (several lines count as one list).
pub fn client_ip(peer: IpAddr, trusted: &[Cidr], header: ForwardedHeader, values: &[&str]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if trusted.is_empty() || !is_trusted(peer) || values.is_empty() {
        return peer;
    }
    let hops = match header {
        ForwardedHeader::XForwardedFor => x_forwarded_for(values),
        ForwardedHeader::Forwarded => forwarded_for(values),
    };
    let Some(hops) = hops else { return peer };
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = *hop else { return peer };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    // Every hop is one we trust: the furthest one is the best we know.
    client
}

/// The addresses of `X-Forwarded-For`, left to right; `None` in place of an
/// entry that is not an address. `None` overall when there is no entry.
fn x_forwarded_for(values: &[&str]) -> Option<Vec<Option<IpAddr>>> {
    let hops: Vec<Option<IpAddr>> = values.iter().flat_map(|v| v.split(',')).map(|e| node_address(e.trim())).collect();
    (!hops.is_empty()).then_some(hops)
}

/// The `for=` addresses of RFC 7239 `Forwarded`, left to right; `None` in
/// place of an element without one, or whose node is obfuscated or
/// `unknown`, or not an address.
fn forwarded_for(values: &[&str]) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for v in values {
        for element in split_outside_quotes(v, ',') {
            if element.trim().is_empty() {
                hops.push(None);
                continue;
            }
            // Each pair must be `name=value`; `for` at most once (RFC 7239 4).
            let mut found = None;
            let mut fors = 0;
            let mut valid = true;
            for pair in split_outside_quotes(element, ';') {
                match pair.split_once('=') {
                    Some((k, val)) if k.trim().eq_ignore_ascii_case("for") => {
                        fors += 1;
                        found = unquote(val.trim()).and_then(|n| node_address(&n));
                    }
                    Some(_) => {}
                    None => valid = false,
                }
            }
            hops.push(if valid && fors == 1 { found } else { None });
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// Splits at `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// A token or a quoted string's content; `None` for an unterminated quote.
fn unquote(v: &str) -> Option<String> {
    match v.strip_prefix('"') {
        None => Some(v.to_string()),
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    out.push(chars.next()?);
                } else {
                    out.push(c);
                }
            }
            Some(out)
        }
    }
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:4711`; anything else (`unknown`, `_hidden`, a name) is not
/// an address.
fn node_address(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(valid_port)) {
            return None;
        }
        return addr.parse::<std::net::Ipv6Addr>().ok().map(|a| IpAddr::V6(a).to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (addr, port) = node.rsplit_once(':')?;
    if !valid_port(port) {
        return None;
    }
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port number, or an RFC 7239 obfuscated port (`_abc`).
fn valid_port(p: &str) -> bool {
    let number = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok();
    let obfuscated = p.len() > 1
        && p.starts_with('_')
        && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    number || obfuscated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(peer: &str, trusted: &[&str], values: &[&str]) -> String {
        client_ip(ip(peer), &nets(trusted), ForwardedHeader::XForwardedFor, values).to_string()
    }

    fn fwd(peer: &str, trusted: &[&str], values: &[&str]) -> String {
        client_ip(ip(peer), &nets(trusted), ForwardedHeader::Forwarded, values).to_string()
    }

    #[test]
    fn cidr_blocks_parse_and_contain() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.200.3.4")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "an IPv4-mapped peer (a dual-stack listener) is its IPv4 address");
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("2001:db8::1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")) && !v6.contains(ip("10.0.0.1")));
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains(ip("10.9.9.9")) && mapped.contains(ip("::ffff:10.9.9.9")));
        let any6: Cidr = "::/0".parse().unwrap();
        assert!(any6.contains(ip("fe80::1")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8", "eth0", "10.0.0.0/+8", "", "10.0.0.0/8/8"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn without_trusted_proxies_every_forwarded_header_is_ignored() {
        assert_eq!(xff("127.0.0.1", &[], &["203.0.113.7"]), "127.0.0.1");
        assert_eq!(fwd("127.0.0.1", &[], &["for=203.0.113.7"]), "127.0.0.1");
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(xff("198.51.100.4", &["10.0.0.0/8"], &["203.0.113.7"]), "198.51.100.4");
        assert_eq!(fwd("198.51.100.4", &["10.0.0.0/8"], &["for=203.0.113.7"]), "198.51.100.4");
    }

    #[test]
    fn a_trusted_peer_forwards_the_client() {
        assert_eq!(xff("10.0.0.2", &["10.0.0.0/8"], &["203.0.113.7"]), "203.0.113.7");
        assert_eq!(xff("10.0.0.2", &["10.0.0.0/8"], &[" 203.0.113.7 "]), "203.0.113.7");
        assert_eq!(xff("10.0.0.2", &["10.0.0.0/8"], &[]), "10.0.0.2", "no header: the peer");
    }

    #[test]
    fn spoofed_leftmost_entries_are_skipped() {
        // The client sent "X-Forwarded-For: 1.1.1.1, 10.9.9.9"; nginx appended
        // the address it saw.
        assert_eq!(xff("10.0.0.2", &["10.0.0.0/8"], &["1.1.1.1, 10.9.9.9, 203.0.113.7"]), "203.0.113.7");
        assert_eq!(xff("10.0.0.2", &["10.0.0.0/8"], &["garbage, 203.0.113.7"]), "203.0.113.7");
        assert_eq!(fwd("10.0.0.2", &["10.0.0.0/8"], &["for=1.1.1.1, for=203.0.113.7"]), "203.0.113.7");
    }

    #[test]
    fn chains_of_trusted_proxies_are_walked_right_to_left() {
        let trusted = ["10.0.0.0/8", "192.168.0.0/16"];
        assert_eq!(xff("10.0.0.2", &trusted, &["203.0.113.7, 192.168.1.1, 10.1.1.1"]), "203.0.113.7");
        // Several header lines are one list, in order.
        assert_eq!(xff("10.0.0.2", &trusted, &["198.51.100.1, 203.0.113.7", "192.168.1.1"]), "203.0.113.7");
        // Every hop trusted: the furthest one.
        assert_eq!(xff("10.0.0.2", &trusted, &["10.3.3.3, 192.168.1.1"]), "10.3.3.3");
        assert_eq!(
            fwd("10.0.0.2", &trusted, &["for=203.0.113.7;proto=https, for=192.168.1.1;by=10.0.0.2"]),
            "203.0.113.7"
        );
    }

    #[test]
    fn ipv6_and_ports_are_understood() {
        let trusted = ["10.0.0.0/8", "fd00::/8"];
        assert_eq!(xff("fd00::2", &trusted, &["2001:db8::7"]), "2001:db8::7");
        assert_eq!(xff("fd00::2", &trusted, &["[2001:db8::7]:4711"]), "2001:db8::7");
        assert_eq!(xff("fd00::2", &trusted, &["[2001:db8::7]"]), "2001:db8::7");
        assert_eq!(xff("10.0.0.2", &trusted, &["203.0.113.7:51234"]), "203.0.113.7");
        assert_eq!(xff("::ffff:10.0.0.2", &trusted, &["::ffff:203.0.113.7"]), "203.0.113.7");
        assert_eq!(fwd("10.0.0.2", &trusted, &[r#"for="[2001:db8:cafe::17]:4711""#]), "2001:db8:cafe::17");
        assert_eq!(fwd("10.0.0.2", &trusted, &[r#"For="192.0.2.60:8080";proto=http"#]), "192.0.2.60");
        assert_eq!(fwd("10.0.0.2", &trusted, &[r#"for="192.0.2.60:_port""#]), "192.0.2.60");
        assert_eq!(
            client_ip(ip("::ffff:198.51.100.4"), &[], ForwardedHeader::XForwardedFor, &[]).to_string(),
            "198.51.100.4"
        );
    }

    #[test]
    fn malformed_values_fall_back_to_the_peer() {
        let t = ["10.0.0.0/8"];
        for v in [
            "",
            "not-an-ip",
            "203.0.113.7, ",
            "203.0.113.7,,",
            "203.0.113.7:99999",
            "203.0.113.7:",
            "[2001:db8::7",
            "[2001:db8::7]x",
            "2001:db8::7:80:1:2:3:4:5",
            "203.0.113.7 198.51.100.1",
            "unknown",
        ] {
            assert_eq!(xff("10.0.0.2", &t, &[v]), "10.0.0.2", "X-Forwarded-For {v:?}");
        }
        // Reached through trusted hops only: a malformed entry left of a
        // trusted one stops the walk at the peer.
        assert_eq!(xff("10.0.0.2", &t, &["bogus, 10.1.1.1"]), "10.0.0.2");
        for v in [
            "for=unknown",
            r#"for="_hidden""#,
            "for=203.0.113.7;for=198.51.100.1",
            "by=10.0.0.1",
            r#"for="203.0.113.7"#,
            "for",
            "203.0.113.7",
            "for=203.0.113.7,",
        ] {
            assert_eq!(fwd("10.0.0.2", &t, &[v]), "10.0.0.2", "Forwarded {v:?}");
        }
    }

    #[test]
    fn settings_name_the_header_and_blocks_as_strings() {
        let h: ForwardedHeader = serde_json::from_str(r#""forwarded""#).unwrap();
        assert_eq!(h, ForwardedHeader::Forwarded);
        assert_eq!(serde_json::to_string(&ForwardedHeader::XForwardedFor).unwrap(), r#""x-forwarded-for""#);
        assert!(serde_json::from_str::<ForwardedHeader>(r#""x-real-ip""#).is_err());
        let blocks: Vec<Cidr> = serde_json::from_str(r#"["10.0.0.0/8", "::1"]"#).unwrap();
        assert_eq!(serde_json::to_string(&blocks).unwrap(), r#"["10.0.0.0/8","::1/128"]"#);
        assert!(serde_json::from_str::<Vec<Cidr>>(r#"["10.0.0.0/40"]"#).is_err());
    }
}
