//! Address context from MaxMind's GeoLite2/GeoIP2 City and ASN databases
//! (or any MMDB of that shape), read with the `maxminddb` crate.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{Reader, geoip2};
use serde::{Deserialize, Serialize};

/// What a finding says about its `source_ip`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceContext {
    /// `public` (looked up), `private` (RFC 1918, loopback, link-local,
    /// shared and unique-local ranges: no look-up), `aws_service` (an AWS
    /// service name such as `s3.amazonaws.com` or `AWS Internal`), or
    /// `not_an_address`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
}

impl SourceContext {
    /// `Linköping, SE; AS29518 Bredband2 AB`, `private address`,
    /// `AWS service`: for the alert formats.
    pub fn describe(&self) -> String {
        match self.kind.as_str() {
            "private" => return "private address".into(),
            "aws_service" => return "AWS service".into(),
            "not_an_address" => return "not an IP address".into(),
            _ => {}
        }
        let place = match (&self.city, &self.country) {
            (Some(c), Some(k)) => Some(format!("{c}, {k}")),
            (None, Some(k)) => Some(k.clone()),
            (Some(c), None) => Some(c.clone()),
            (None, None) => None,
        };
        let network = self.asn.map(|n| match &self.as_org {
            Some(o) => format!("AS{n} {o}"),
            None => format!("AS{n}"),
        });
        match (place, network) {
            (Some(p), Some(n)) => format!("{p}; {n}"),
            (Some(p), None) => p,
            (None, Some(n)) => n,
            (None, None) => "public address, not in the GeoIP databases".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct GeoIpError {
    pub path: String,
    pub message: String,
}

/// Addresses whose context is kept: findings come in runs from the same
/// address, and a City record decodes names in eight languages.
const CACHE: usize = 4096;

/// The loaded databases; either may be absent.
pub struct GeoIp {
    city: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
    cache: std::sync::Mutex<lru::LruCache<String, SourceContext>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field(
                "city",
                &self.city.as_ref().map(|r| &r.metadata().database_type),
            )
            .field(
                "asn",
                &self.asn.as_ref().map(|r| &r.metadata().database_type),
            )
            .finish()
    }
}

fn open(path: &Path, want: &str) -> Result<Reader<Vec<u8>>, GeoIpError> {
    let err = |message: String| GeoIpError {
        path: path.display().to_string(),
        message,
    };
    let reader =
        Reader::open_readfile(path).map_err(|e| err(format!("cannot be read as an MMDB: {e}")))?;
    let kind = reader.metadata().database_type.clone();
    if !kind.contains(want) {
        let article = if want.starts_with(['A', 'E', 'I', 'O', 'U']) {
            "an"
        } else {
            "a"
        };
        return Err(err(format!(
            "is a `{kind}` database, not {article} {want} database"
        )));
    }
    Ok(reader)
}

/// Addresses that are nobody's location: no look-up.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10, shared address space (carrier-grade NAT)
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link-local
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

impl GeoIp {
    /// Opens the databases given; each must be of its kind (`City` or
    /// `Country` for `city_db`, `ASN` for `asn_db`).
    pub fn open(city_db: Option<&Path>, asn_db: Option<&Path>) -> Result<GeoIp, GeoIpError> {
        let city = city_db
            .map(|p| {
                open(p, "City").or_else(|e| {
                    // A Country database answers the country part.
                    open(p, "Country").map_err(|_| e)
                })
            })
            .transpose()?;
        Ok(GeoIp {
            city,
            asn: asn_db.map(|p| open(p, "ASN")).transpose()?,
            cache: std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(CACHE).expect("not zero"),
            )),
        })
    }

    pub fn has_asn(&self) -> bool {
        self.asn.is_some()
    }

    /// The ASN of `ip`, when the ASN database knows it.
    pub fn asn(&self, ip: IpAddr) -> Option<(u32, Option<String>)> {
        let r = self.asn.as_ref()?.lookup(ip).ok()?;
        let a: geoip2::Asn<'_> = r.decode().ok()??;
        Some((
            a.autonomous_system_number?,
            a.autonomous_system_organization.map(str::to_owned),
        ))
    }

    /// The context of a `sourceIPAddress` value (remembered for the last
    /// few thousand addresses).
    pub fn context(&self, source: &str) -> SourceContext {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(source) {
            return c.clone();
        }
        drop(cache);
        let c = self.look_up(source);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(source.to_owned(), c.clone());
        c
    }

    fn look_up(&self, source: &str) -> SourceContext {
        let ip: IpAddr = match source.trim().parse() {
            Ok(ip) => ip,
            Err(_) => {
                let kind = if source == "AWS Internal"
                    || source.ends_with(".amazonaws.com")
                    || source.ends_with(".amazonaws.com.cn")
                {
                    "aws_service"
                } else {
                    "not_an_address"
                };
                return SourceContext {
                    kind: kind.into(),
                    ..SourceContext::default()
                };
            }
        };
        if is_private(ip) {
            return SourceContext {
                kind: "private".into(),
                ..SourceContext::default()
            };
        }
        let mut c = SourceContext {
            kind: "public".into(),
            ..SourceContext::default()
        };
        if let Some(reader) = &self.city
            && let Ok(r) = reader.lookup(ip)
            && let Ok(Some(city)) = r.decode::<geoip2::City<'_>>()
        {
            c.country = city.country.iso_code.map(str::to_owned);
            c.country_name = city.country.names.english.map(str::to_owned);
            c.city = city.city.names.english.map(str::to_owned);
        }
        if let Some((n, org)) = self.asn(ip) {
            c.asn = Some(n);
            c.as_org = org;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/third_party/maxmind")
            .join(name)
    }

    #[test]
    fn addresses_are_told_apart_and_public_ones_looked_up() {
        let g = GeoIp::open(
            Some(&db("GeoLite2-City-Test.mmdb")),
            Some(&db("GeoLite2-ASN-Test.mmdb")),
        )
        .unwrap();
        let c = g.context("89.160.20.130");
        assert_eq!(c.describe(), "Linköping, SE; AS29518 Bredband2 AB");
        assert_eq!(c.country_name.as_deref(), Some("Sweden"));
        // 2.125.160.216/29: Boxford, GB (the City source data).
        assert_eq!(g.context("2.125.160.217").city.as_deref(), Some("Boxford"));
        for private in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.1.2.3",
        ] {
            assert_eq!(g.context(private).kind, "private", "{private}");
        }
        for service in [
            "AWS Internal",
            "s3.amazonaws.com",
            "cloudformation.amazonaws.com",
        ] {
            assert_eq!(g.context(service).describe(), "AWS service", "{service}");
        }
        assert_eq!(g.context("not an ip").kind, "not_an_address");
        // A public address neither database has.
        let unknown = g.context("198.51.100.7");
        assert_eq!(unknown.kind, "public");
        assert_eq!(
            unknown.describe(),
            "public address, not in the GeoIP databases"
        );
    }

    #[test]
    fn each_database_must_be_of_its_kind() {
        let e = GeoIp::open(Some(&db("GeoLite2-ASN-Test.mmdb")), None).unwrap_err();
        assert!(e.to_string().contains("not a City database"), "{e}");
        let e = GeoIp::open(None, Some(&db("GeoLite2-City-Test.mmdb"))).unwrap_err();
        assert!(e.to_string().contains("not an ASN database"), "{e}");
        let e = GeoIp::open(None, Some(&db("UPSTREAM-README.md"))).unwrap_err();
        assert!(e.to_string().contains("cannot be read as an MMDB"), "{e}");
    }
}
