//! The IP allow list: IPv4 and IPv6 prefixes in prefix tries, so a lookup
//! costs the prefix length, not the number of entries.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixSet;

use super::{Context, Hit, Rule, mitre};
use crate::event::Record;
use crate::finding::{Severity, Technique};

#[derive(Clone, Default)]
pub struct CidrSet {
    v4: PrefixSet<Ipv4Net>,
    v6: PrefixSet<Ipv6Net>,
    len: usize,
}

impl std::fmt::Debug for CidrSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CidrSet({} prefixes)", self.len)
    }
}

impl CidrSet {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut set = CidrSet::default();
        for net in nets {
            set.insert(net);
        }
        set
    }

    pub fn insert(&mut self, net: IpNet) {
        let fresh = match net.trunc() {
            IpNet::V4(n) => self.v4.insert(n),
            IpNet::V6(n) => self.v6.insert(n),
        };
        if fresh {
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.is_covered(&Ipv4Net::from(a)),
            IpAddr::V6(a) => self.v6.is_covered(&Ipv6Net::from(a)),
        }
    }
}

/// Parses one CIDR; a bare address means a single host.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{s}` is not an IPv4/IPv6 address or CIDR"))
}

/// `sourceIPAddress` as an address. Service names (`AWS Internal`,
/// `cloudtrail.amazonaws.com`) and anything else that is not an address
/// give `None`; IPv4-mapped IPv6 addresses read as IPv4.
pub fn source_ip(rec: &Record<'_>) -> Option<IpAddr> {
    source_ip_text(rec.source_ip_address.get()?)
}

/// [`source_ip`] on the field's text.
pub(crate) fn source_ip_text(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let first = s.as_bytes().first()?;
    if !(first.is_ascii_hexdigit() || *first == b':') {
        return None;
    }
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every call made by a principal (not a service).
    #[default]
    All,
    /// Only calls made by the root user.
    Root,
}

#[derive(Debug, Clone, Default)]
pub struct AllowList {
    pub cidrs: CidrSet,
    pub scope: Scope,
}

/// `source-ip-not-allowed`.
pub struct SourceIpNotAllowed;

impl Rule for SourceIpNotAllowed {
    fn id(&self) -> &'static str {
        "source-ip-not-allowed"
    }
    fn title(&self) -> &'static str {
        "Call from outside the IP allow list"
    }
    fn default_severity(&self) -> Severity {
        Severity::Medium
    }
    fn fields(&self) -> &'static str {
        "sourceIPAddress, eventType, userIdentity.type, userIdentity.invokedBy"
    }
    fn technique(&self) -> Technique {
        mitre::VALID_CLOUD_ACCOUNTS
    }
    fn evaluate(&self, rec: &Record<'_>, ctx: &Context) -> Option<Hit> {
        let list = &ctx.allowlist;
        if list.cidrs.is_empty() {
            return None;
        }
        let root = rec.is_root();
        if list.scope == Scope::Root && !root {
            return None;
        }
        if rec.is_service_event() {
            return None;
        }
        let ip = source_ip(rec)?;
        if list.cidrs.contains(ip) {
            return None;
        }
        Some(Hit {
            severity: if root {
                Severity::High
            } else {
                Severity::Medium
            },
            reason: format!(
                "{} called {} from {ip}, which no allow-listed CIDR contains",
                if root { "The root user" } else { "A principal" },
                rec.event_name.get().unwrap_or("an API"),
            ),
            mfa: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cidrs: &[&str]) -> CidrSet {
        CidrSet::new(cidrs.iter().map(|c| parse_cidr(c).unwrap()))
    }

    #[test]
    fn contains_v4_v6_and_mapped() {
        let s = set(&[
            "203.0.113.0/24",
            "2001:db8::/32",
            "198.51.100.7",
            "10.0.0.0/8",
        ]);
        assert_eq!(s.len(), 4);
        assert!(s.contains("203.0.113.200".parse().unwrap()));
        assert!(!s.contains("203.0.114.1".parse().unwrap()));
        assert!(s.contains("198.51.100.7".parse().unwrap()));
        assert!(!s.contains("198.51.100.8".parse().unwrap()));
        assert!(s.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!s.contains("2001:db9::1".parse().unwrap()));
        assert!(s.contains("::ffff:203.0.113.5".parse().unwrap()));
        assert!(s.contains("10.255.255.255".parse().unwrap()));
    }

    #[test]
    fn host_bits_are_truncated_and_bad_cidrs_named() {
        let s = set(&["203.0.113.77/24"]);
        assert!(s.contains("203.0.113.1".parse().unwrap()));
        assert!(
            parse_cidr("203.0.113.0/33")
                .unwrap_err()
                .contains("203.0.113.0/33")
        );
        assert!(parse_cidr("example.com").is_err());
    }

    #[test]
    fn many_prefixes() {
        let mut s = CidrSet::default();
        for i in 0..5000u32 {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8));
            s.insert(IpNet::V4(Ipv4Net::new(a, 24).unwrap()));
        }
        assert_eq!(s.len(), 5000);
        assert!(s.contains("10.0.19.3".parse().unwrap()));
        assert!(!s.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn source_ip_skips_service_names() {
        for (v, want) in [
            ("AWS Internal", None),
            ("cloudtrail.amazonaws.com", None),
            ("198.51.100.7", Some("198.51.100.7")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("::ffff:198.51.100.7", Some("198.51.100.7")),
            ("deadbeef", None),
            ("", None),
        ] {
            let raw = format!(r#"{{"sourceIPAddress":"{v}"}}"#);
            let rec = Record::parse(&raw).unwrap();
            assert_eq!(
                source_ip(&rec).map(|i| i.to_string()).as_deref(),
                want,
                "{v}"
            );
        }
    }
}
