//! A borrowed view of one CloudTrail record: only the fields rules and alerts
//! read, parsed in one pass and tolerant of what real pipelines produce
//! (nulls, missing fields, numbers or booleans where strings are expected,
//! re-serialised timestamps).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A scalar read leniently. Strings borrow from the input when they carry no
/// escapes; booleans and numbers keep their text form (`readOnly` arrives as
/// `true` or `"true"` depending on the pipeline); null, objects and arrays
/// read as absent rather than failing the whole record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The value when present and not empty.
    pub fn non_empty(&self) -> Option<&str> {
        self.get().filter(|s| !s.is_empty())
    }

    pub fn is(&self, expected: &str) -> bool {
        self.get() == Some(expected)
    }

    pub fn is_ignore_case(&self, expected: &str) -> bool {
        self.get().is_some_and(|v| v.eq_ignore_ascii_case(expected))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor(PhantomData))
    }
}

struct TextVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
    type Value = Text<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v))))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Borrowed(if v { "true" } else { "false" }))))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_string()))))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_string()))))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_string()))))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }
}

/// A nested object read leniently: a JSON object becomes `Some(T)`, anything
/// else (null, a string, an array) becomes `None` instead of failing the
/// record. `responseElements: null` is the common case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Obj<T>(pub Option<T>);

impl<T> Obj<T> {
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjVisitor(PhantomData))
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Obj(Some(t)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Obj(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Obj(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Obj(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Obj(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Obj(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Obj(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Obj(None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Obj(None))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserIdentity<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
    #[serde(borrow)]
    pub principal_id: Text<'a>,
    #[serde(borrow)]
    pub arn: Text<'a>,
    #[serde(borrow)]
    pub account_id: Text<'a>,
    #[serde(borrow)]
    pub access_key_id: Text<'a>,
    #[serde(borrow)]
    pub user_name: Text<'a>,
    #[serde(borrow)]
    pub invoked_by: Text<'a>,
    #[serde(borrow)]
    pub session_context: Obj<SessionContext<'a>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SessionContext<'a> {
    #[serde(borrow)]
    pub attributes: Obj<SessionAttributes<'a>>,
    /// `"true"` in sessions created by `sts:AssumeRoot` (centralised root access).
    #[serde(borrow)]
    pub assumed_root: Text<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SessionAttributes<'a> {
    #[serde(borrow)]
    pub mfa_authenticated: Text<'a>,
    #[serde(borrow)]
    pub creation_date: Text<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ResponseElements<'a> {
    #[serde(rename = "ConsoleLogin", borrow)]
    pub console_login: Text<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AdditionalEventData<'a> {
    #[serde(rename = "MFAUsed", borrow)]
    pub mfa_used: Text<'a>,
    #[serde(rename = "SamlProviderArn", borrow)]
    pub saml_provider_arn: Text<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestParameters<'a> {
    #[serde(borrow)]
    pub user_name: Text<'a>,
}

/// The fields of one JSON document that decode looks at: the CloudTrail
/// record fields, plus the keys that tell an envelope apart. Records and
/// envelopes are read with the same struct so a raw record is parsed once.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Document<'a> {
    #[serde(borrow)]
    pub event_version: Text<'a>,
    #[serde(rename = "eventID", borrow)]
    pub event_id: Text<'a>,
    #[serde(borrow)]
    pub event_time: Text<'a>,
    #[serde(borrow)]
    pub event_name: Text<'a>,
    #[serde(borrow)]
    pub event_source: Text<'a>,
    #[serde(borrow)]
    pub event_type: Text<'a>,
    #[serde(borrow)]
    pub aws_region: Text<'a>,
    #[serde(rename = "sourceIPAddress", borrow)]
    pub source_ip_address: Text<'a>,
    #[serde(borrow)]
    pub user_agent: Text<'a>,
    #[serde(borrow)]
    pub recipient_account_id: Text<'a>,
    #[serde(borrow)]
    pub error_code: Text<'a>,
    #[serde(borrow)]
    pub read_only: Text<'a>,
    #[serde(borrow)]
    pub user_identity: Obj<UserIdentity<'a>>,
    #[serde(borrow)]
    pub response_elements: Obj<ResponseElements<'a>>,
    #[serde(borrow)]
    pub additional_event_data: Obj<AdditionalEventData<'a>>,
    #[serde(borrow)]
    pub request_parameters: Obj<RequestParameters<'a>>,

    // Envelope keys (docs/sources.md, "What it reads").
    #[serde(rename = "detail-type", borrow)]
    pub detail_type: Text<'a>,
    #[serde(borrow)]
    pub detail: Option<&'a RawValue>,
    #[serde(borrow)]
    pub source: Text<'a>,
    /// An EventBridge event's region (where an S3 object was created).
    #[serde(borrow)]
    pub region: Text<'a>,
    #[serde(rename = "Type", borrow)]
    pub sns_type: Text<'a>,
    #[serde(rename = "Message", borrow)]
    pub sns_message: Text<'a>,
    #[serde(rename = "Records", borrow)]
    /// Read straight into element slices: a log file is scanned once here
    /// and once per record, not a third time.
    pub records: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    pub s3_bucket: Text<'a>,
    #[serde(borrow)]
    pub s3_object_key: Option<&'a RawValue>,
    #[serde(borrow)]
    pub s3: Option<&'a RawValue>,
    #[serde(borrow)]
    pub message_type: Text<'a>,
    #[serde(borrow)]
    pub log_events: Option<&'a RawValue>,
    #[serde(rename = "Event", borrow)]
    pub s3_test_event: Text<'a>,
    #[serde(borrow)]
    pub digest_start_time: Text<'a>,
    #[serde(borrow)]
    pub digest_end_time: Text<'a>,
}

/// One CloudTrail record: the parsed fields and the raw JSON text they came
/// from (kept for the alert).
#[derive(Debug)]
pub struct Record<'a> {
    pub raw: &'a str,
    /// [`Record::event_key`], computed once: dedup and every finding's id
    /// use it.
    key: std::cell::OnceCell<Option<EventKey>>,
    pub event_version: Text<'a>,
    pub event_id: Text<'a>,
    pub event_time: Text<'a>,
    pub event_name: Text<'a>,
    pub event_source: Text<'a>,
    pub event_type: Text<'a>,
    pub aws_region: Text<'a>,
    pub source_ip_address: Text<'a>,
    pub user_agent: Text<'a>,
    pub recipient_account_id: Text<'a>,
    pub error_code: Text<'a>,
    pub read_only: Text<'a>,
    pub user_identity: UserIdentity<'a>,
    pub response_elements: Obj<ResponseElements<'a>>,
    pub additional_event_data: Obj<AdditionalEventData<'a>>,
    pub request_parameters: Obj<RequestParameters<'a>>,
}

/// The console sign-in service: actions a person takes in the console carry
/// it as `invokedBy`, so it does not make an event a service event.
const SIGNIN_SERVICE: &str = "signin.amazonaws.com";

impl<'a> Record<'a> {
    pub(crate) fn from_document(raw: &'a str, d: Document<'a>) -> Self {
        Record {
            raw,
            key: std::cell::OnceCell::new(),
            event_version: d.event_version,
            event_id: d.event_id,
            event_time: d.event_time,
            event_name: d.event_name,
            event_source: d.event_source,
            event_type: d.event_type,
            aws_region: d.aws_region,
            source_ip_address: d.source_ip_address,
            user_agent: d.user_agent,
            recipient_account_id: d.recipient_account_id,
            error_code: d.error_code,
            read_only: d.read_only,
            user_identity: d.user_identity.0.unwrap_or_default(),
            response_elements: d.response_elements,
            additional_event_data: d.additional_event_data,
            request_parameters: d.request_parameters,
        }
    }

    /// Parses one record from its JSON text.
    pub fn parse(raw: &'a str) -> Result<Self, serde_json::Error> {
        let doc: Document<'a> = serde_json::from_str(raw)?;
        Ok(Self::from_document(raw, doc))
    }

    pub fn is_root(&self) -> bool {
        self.user_identity.kind.is("Root")
    }

    pub fn is_console_login(&self) -> bool {
        self.event_name.is("ConsoleLogin")
    }

    /// An event AWS made on its own, or on behalf of a principal through
    /// another service. Console actions (`invokedBy = signin.amazonaws.com`)
    /// are the person and do not count.
    pub fn is_service_event(&self) -> bool {
        if self.event_type.is("AwsServiceEvent") {
            return true;
        }
        match self.user_identity.invoked_by.non_empty() {
            Some(by) => !by.eq_ignore_ascii_case(SIGNIN_SERVICE),
            None => false,
        }
    }

    /// A root event inside an `sts:AssumeRoot` session.
    pub fn is_assumed_root(&self) -> bool {
        self.user_identity
            .session_context
            .get()
            .is_some_and(|s| s.assumed_root.is_ignore_case("true"))
    }

    /// `responseElements.ConsoleLogin`: `Success` or `Failure`.
    pub fn console_login_result(&self) -> Option<&str> {
        self.response_elements.get()?.console_login.get()
    }

    /// `additionalEventData.MFAUsed` as a boolean: AWS writes `Yes`, `YES`
    /// and `No`; anything else is read as no MFA.
    pub fn console_mfa_used(&self) -> Option<bool> {
        let v = self.additional_event_data.get()?.mfa_used.get()?;
        Some(v.eq_ignore_ascii_case("yes"))
    }

    pub fn is_saml_login(&self) -> bool {
        self.additional_event_data
            .get()
            .is_some_and(|a| a.saml_provider_arn.non_empty().is_some())
    }

    /// `sessionContext.attributes.mfaAuthenticated`, when present.
    pub fn session_mfa(&self) -> Option<bool> {
        let attrs = self.user_identity.session_context.get()?.attributes.get()?;
        let v = attrs.mfa_authenticated.get()?;
        Some(v.eq_ignore_ascii_case("true"))
    }

    /// The account the event belongs to.
    pub fn account(&self) -> Option<&str> {
        self.recipient_account_id
            .non_empty()
            .or_else(|| self.user_identity.account_id.non_empty())
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only.is_ignore_case("true")
    }

    pub fn is_error(&self) -> bool {
        self.error_code.non_empty().is_some()
    }

    /// The event time, from RFC 3339 (with or without fractional seconds)
    /// or the `2022-09-15 13:45:24` form some pipelines re-serialise to.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        parse_event_time(self.event_time.get()?)
    }

    /// The key that identifies one event for de-duplication, or `None` when
    /// the record has no eventID (then it is never treated as a duplicate).
    pub fn event_key(&self) -> Option<EventKey> {
        *self.key.get_or_init(|| {
            let id = self.event_id.non_empty()?;
            Some(EventKey::new(
                id,
                self.event_time.get().unwrap_or(""),
                self.event_name.get().unwrap_or(""),
                self.account().unwrap_or(""),
            ))
        })
    }
}

/// eventID plus eventTime, eventName and account, hashed: distinct events
/// that share a malformed eventID stay distinct, and the cache holds a fixed
/// 16 bytes per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey(pub [u8; 16]);

impl EventKey {
    pub fn new(event_id: &str, event_time: &str, event_name: &str, account: &str) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [event_id, event_time, event_name, account] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        EventKey(out)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Parses the time forms seen in CloudTrail data. Times without a zone are UTC.
pub fn parse_event_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.fZ",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_LOGIN: &str = r#"{"eventVersion":"1.05","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":""},"eventTime":"2014-07-16T15:49:27Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-2","sourceIPAddress":"192.0.2.110","userAgent":"Mozilla/5.0","requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/s3/","MobileVersion":"No","MFAUsed":"No"},"eventID":"deb1e1f9-c99b-4612-8e9f-21f93b5daaa5","eventType":"AwsConsoleSignIn","recipientAccountId":"111122223333"}"#;

    #[test]
    fn reads_root_console_login() {
        let r = Record::parse(ROOT_LOGIN).unwrap();
        assert!(r.is_root());
        assert!(r.is_console_login());
        assert_eq!(r.console_login_result(), Some("Success"));
        assert_eq!(r.console_mfa_used(), Some(false));
        assert!(r.request_parameters.get().is_none());
        assert_eq!(r.account(), Some("111122223333"));
        assert_eq!(r.raw, ROOT_LOGIN);
        assert!(matches!(r.event_id.0, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn tolerates_nulls_wrong_types_and_missing_fields() {
        let raw = r#"{"eventTime":"2022-09-15 13:45:24","eventName":"GetCallerIdentity","readOnly":true,"userIdentity":{"type":"Root","sessionContext":"weird"},"responseElements":null,"additionalEventData":[1,2],"requestParameters":"x","sourceIPAddress":12345,"userAgent":{"a":1}}"#;
        let r = Record::parse(raw).unwrap();
        assert!(r.is_root());
        assert!(r.is_read_only());
        assert_eq!(r.source_ip_address.get(), Some("12345"));
        assert_eq!(r.user_agent.get(), None);
        assert!(r.user_identity.session_context.get().is_none());
        assert!(r.additional_event_data.get().is_none());
        assert_eq!(r.session_mfa(), None);
        assert_eq!(r.time().unwrap().to_rfc3339(), "2022-09-15T13:45:24+00:00");
        assert!(r.event_key().is_none(), "no eventID, no key");
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let r = Record::parse(r#"{"userAgent":"a\"b\u0041"}"#).unwrap();
        assert_eq!(r.user_agent.get(), Some("a\"bA"));
    }

    #[test]
    fn event_times_in_every_seen_form() {
        for (s, want) in [
            ("2019-01-01T00:00:00Z", "2019-01-01T00:00:00+00:00"),
            ("2019-01-01T00:00:00.123Z", "2019-01-01T00:00:00.123+00:00"),
            ("2022-09-15 13:45:24", "2022-09-15T13:45:24+00:00"),
            ("2022-09-15T13:45:24", "2022-09-15T13:45:24+00:00"),
            ("2022-09-15T15:45:24+02:00", "2022-09-15T13:45:24+00:00"),
        ] {
            assert_eq!(parse_event_time(s).unwrap().to_rfc3339(), want, "{s}");
        }
        assert!(parse_event_time("yesterday").is_none());
    }

    #[test]
    fn event_key_separates_fields() {
        let a = EventKey::new("id", "t", "n", "a");
        assert_eq!(a, EventKey::new("id", "t", "n", "a"));
        assert_ne!(a, EventKey::new("id", "t2", "n", "a"));
        assert_ne!(
            EventKey::new("ab", "c", "", ""),
            EventKey::new("a", "bc", "", "")
        );
    }

    #[test]
    fn signin_invoked_by_is_not_a_service_event() {
        let console = Record::parse(r#"{"userIdentity":{"type":"Root","invokedBy":"signin.amazonaws.com"},"eventType":"AwsApiCall"}"#).unwrap();
        assert!(!console.is_service_event());
        let svc = Record::parse(r#"{"userIdentity":{"type":"Root","invokedBy":"cloudformation.amazonaws.com"},"eventType":"AwsApiCall"}"#).unwrap();
        assert!(svc.is_service_event());
        let evt =
            Record::parse(r#"{"userIdentity":{"type":"Root"},"eventType":"AwsServiceEvent"}"#)
                .unwrap();
        assert!(evt.is_service_event());
    }
}
