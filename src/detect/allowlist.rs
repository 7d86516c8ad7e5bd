//! The IP allow list: IPv4 and IPv6 prefixes merged into sorted,
//! disjoint address ranges, so a lookup is a binary search (about 14 steps
//! for 10,000 prefixes) over a flat array.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Context, Hit, Rule, mitre};
use crate::event::Record;
use crate::finding::{Severity, Technique};

#[derive(Clone, Default)]
pub struct CidrSet {
    /// Inclusive `(first, last)` address ranges, sorted, neither
    /// overlapping nor adjacent.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// Distinct prefixes given (after host bits are cleared).
    len: usize,
}

impl std::fmt::Debug for CidrSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CidrSet({} prefixes)", self.len)
    }
}

impl CidrSet {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut nets: Vec<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
        nets.sort_unstable();
        nets.dedup();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in &nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        CidrSet {
            v4: merge(v4, |a| a.checked_add(1)),
            v6: merge(v6, |a| a.checked_add(1)),
            len: nets.len(),
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
            IpAddr::V4(a) => covered(&self.v4, u32::from(a)),
            IpAddr::V6(a) => covered(&self.v6, u128::from(a)),
        }
    }
}

/// Sorts `ranges` and joins the ones that overlap or touch (`next` is an
/// address's successor, if it has one).
fn merge<T: Ord + Copy>(mut ranges: Vec<(T, T)>, next: fn(T) -> Option<T>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some(prev) if prev.1 >= first || next(prev.1) == Some(first) => {
                prev.1 = prev.1.max(last);
            }
            _ => out.push((first, last)),
        }
    }
    out.shrink_to_fit();
    out
}

fn covered<T: Ord + Copy>(ranges: &[(T, T)], a: T) -> bool {
    // The last range starting at or before `a` is the only one that can
    // hold it.
    let i = ranges.partition_point(|&(first, _)| first <= a);
    i > 0 && ranges[i - 1].1 >= a
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
    /// Autonomous systems whose addresses are allowed, looked up in
    /// `geoip`'s ASN database.
    pub asns: std::collections::HashSet<u32>,
    pub geoip: Option<std::sync::Arc<crate::enrich::GeoIp>>,
    pub scope: Scope,
}

impl AllowList {
    /// Whether `ip` is inside the allow list: a CIDR, or an allowed ASN.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.cidrs.contains(ip)
            || (!self.asns.is_empty()
                && self
                    .geoip
                    .as_ref()
                    .and_then(|g| g.asn(ip))
                    .is_some_and(|(n, _)| self.asns.contains(&n)))
    }

    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty() && self.asns.is_empty()
    }
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
        if list.is_empty() {
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
        if list.allows(ip) {
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
        let s = CidrSet::new((0..5000u32).map(|i| {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8));
            IpNet::V4(ipnet::Ipv4Net::new(a, 24).unwrap())
        }));
        assert_eq!(s.len(), 5000);
        assert!(s.contains("10.0.19.3".parse().unwrap()));
        assert!(!s.contains("11.0.0.1".parse().unwrap()));
    }

    proptest::proptest! {
        /// The merged ranges answer as a scan of every prefix would,
        /// with overlapping, nested and adjacent prefixes among them.
        #[test]
        fn ranges_answer_as_the_prefixes_do(
            v4 in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u8..=32), 0..40),
            v6 in proptest::collection::vec((proptest::prelude::any::<u128>(), 0u8..=128), 0..20),
            probes in proptest::collection::vec(proptest::prelude::any::<u32>(), 50),
        ) {
            // Few distinct top bits so prefixes meet, nest and touch.
            let nets: Vec<IpNet> = v4
                .iter()
                .map(|&(a, len)| IpNet::V4(ipnet::Ipv4Net::new((a & 0xC30F_FFFF).into(), len).unwrap()))
                .chain(v6.iter().map(|&(a, len)| {
                    IpNet::V6(ipnet::Ipv6Net::new((a & !(0xFFFF_u128 << 100)).into(), len).unwrap())
                }))
                .collect();
            let set = CidrSet::new(nets.clone());
            let mut addrs: Vec<IpAddr> = probes.iter().map(|&p| IpAddr::from(std::net::Ipv4Addr::from(p & 0xC30F_FFFF))).collect();
            for n in &nets {
                // Both ends of each prefix and the addresses just outside.
                for a in [n.network(), n.broadcast()] {
                    addrs.push(a);
                    match a {
                        IpAddr::V4(x) => {
                            let x = u32::from(x);
                            addrs.extend([x.wrapping_sub(1), x.wrapping_add(1)].map(|y| IpAddr::from(std::net::Ipv4Addr::from(y))));
                        }
                        IpAddr::V6(x) => {
                            let x = u128::from(x);
                            addrs.extend([x.wrapping_sub(1), x.wrapping_add(1)].map(|y| IpAddr::from(std::net::Ipv6Addr::from(y))));
                        }
                    }
                }
            }
            for ip in addrs {
                let want = nets.iter().any(|n| n.contains(&ip.to_canonical()));
                proptest::prop_assert_eq!(set.contains(ip), want, "{}", ip);
            }
            let mut distinct: Vec<IpNet> = nets.iter().map(|n| n.trunc()).collect();
            distinct.sort();
            distinct.dedup();
            proptest::prop_assert_eq!(set.len(), distinct.len());
        }
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
