use super::*;
use std::io::Write;

#[derive(Debug, PartialEq)]
enum Got {
    Record(String),
    /// Passed over by a prefilter: the eventID read from its bytes.
    Unparsed(String),
    Object(String, String),
    Skipped(Skip),
    Error(&'static str),
}

fn collect(f: impl FnOnce(&mut Out<'_>)) -> Vec<Got> {
    let mut got = Vec::new();
    f(&mut |item: Result<Item<'_>, DecodeError>| {
        got.push(match item {
            Ok(Item::Record(r)) => Got::Record(r.event_id.get().unwrap_or("-").to_owned()),
            Ok(Item::Object(o)) => Got::Object(o.bucket, o.key),
            Ok(Item::Skipped(s)) => Got::Skipped(s),
            // Not JSON inside: the prefilter does not look (see log_files).
            Ok(Item::Unparsed(b)) => Got::Unparsed(
                serde_json::from_slice::<serde_json::Value>(b).map_or("not JSON".into(), |v| {
                    v["eventID"].as_str().unwrap_or("-").to_owned()
                }),
            ),
            Err(e) => Got::Error(e.kind()),
        })
    });
    got
}

fn body(s: &str) -> Vec<Got> {
    collect(|out| decode_body(s, out))
}

fn rec(id: &str) -> Got {
    Got::Record(id.into())
}

/// The root sign-in example from the CloudTrail user guide.
const ROOT_LOGIN: &str = r#"{"eventVersion":"1.05","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":""},"eventTime":"2014-07-16T15:49:27Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-2","sourceIPAddress":"192.0.2.110","userAgent":"Mozilla/5.0 (Windows NT 6.1; WOW64; rv:24.0) Gecko/20100101 Firefox/24.0","requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/s3/","MobileVersion":"No","MFAUsed":"No"},"eventID":"deb1e1f9-c99b-4612-8e9f-21f93b5daaa5","eventType":"AwsConsoleSignIn","recipientAccountId":"111122223333"}"#;

fn eventbridge(detail_type: &str, source: &str, detail: &str) -> String {
    format!(
        r#"{{"version":"0","id":"6f8e6d1e-2b0f-4c1c-9d5e-3a1f0c1e2d3f","detail-type":"{detail_type}","source":"{source}","account":"111122223333","time":"2014-07-16T15:49:27Z","region":"us-east-1","resources":[],"detail":{detail}}}"#
    )
}

fn sns(message: &str) -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:111122223333:cloudtrail",
        "Subject": null,
        "Message": message,
        "Timestamp": "2014-07-16T15:49:28.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    })
    .to_string()
}

const S3_NOTIFICATION: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2024-05-01T12:00:00.000Z","eventName":"ObjectCreated:Put","userIdentity":{"principalId":"AWS:AROAEXAMPLE:regionalDeliverySession"},"requestParameters":{"sourceIPAddress":"203.0.113.9"},"responseElements":{"x-amz-request-id":"C3D13FE58DE4C810"},"s3":{"s3SchemaVersion":"1.0","configurationId":"cloudtrail","bucket":{"name":"trail-bucket","ownerIdentity":{"principalId":"A3NL1KOZZKExample"},"arn":"arn:aws:s3:::trail-bucket"},"object":{"key":"AWSLogs%2F111122223333%2FCloudTrail%2Fus-east-1%2F2024%2F05%2F01%2Fmy+file%3A1.json.gz","size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e","sequencer":"0055AED6DCD90281E5"}}}]}"#;

#[test]
fn raw_record() {
    assert_eq!(
        body(ROOT_LOGIN),
        vec![rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5")]
    );
}

#[test]
fn eventbridge_cloudtrail_event() {
    for dt in [
        "AWS Console Sign In via CloudTrail",
        "AWS API Call via CloudTrail",
        "AWS Service Event via CloudTrail",
    ] {
        let b = eventbridge(dt, "aws.signin", ROOT_LOGIN);
        assert_eq!(
            body(&b),
            vec![rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5")],
            "{dt}"
        );
    }
}

#[test]
fn eventbridge_record_keeps_its_own_raw_text() {
    let b = eventbridge(
        "AWS Console Sign In via CloudTrail",
        "aws.signin",
        ROOT_LOGIN,
    );
    let mut raw = String::new();
    decode_body(&b, &mut |item: Result<Item<'_>, DecodeError>| {
        if let Ok(Item::Record(r)) = item {
            raw = r.raw.to_owned();
        }
    });
    assert_eq!(raw, ROOT_LOGIN);
}

#[test]
fn eventbridge_other_detail_types_are_skipped_and_a_missing_detail_is_an_error() {
    let b = eventbridge("Scheduled Event", "aws.events", "{}");
    assert_eq!(body(&b), vec![Got::Skipped(Skip::NotCloudTrail)]);
    for dt in [
        "Object Deleted",
        "Object Restore Completed",
        "Object Tags Added",
    ] {
        let b = eventbridge(
            dt,
            "aws.s3",
            r#"{"version":"0","bucket":{"name":"b"},"object":{"key":"k"}}"#,
        );
        assert_eq!(body(&b), vec![Got::Skipped(Skip::NotCloudTrail)], "{dt}");
    }
    let missing = r#"{"detail-type":"AWS API Call via CloudTrail","source":"aws.iam"}"#;
    assert_eq!(body(missing), vec![Got::Error("malformed")]);
}

/// EventBridge sets `source` to the service of the call: a root S3 API call
/// arrives as `aws.s3` with a CloudTrail detail-type, and is a record, not an
/// object to fetch.
#[test]
fn eventbridge_s3_api_calls_are_records_whatever_the_source() {
    let delete_bucket = r#"{"eventVersion":"1.09","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE"},"eventTime":"2024-05-01T12:00:00Z","eventSource":"s3.amazonaws.com","eventName":"DeleteBucket","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.7","userAgent":"[aws-cli/2.15.0]","requestParameters":{"bucketName":"victim","Host":"victim.s3.amazonaws.com"},"responseElements":null,"requestID":"R1","eventID":"s3-root-delete","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}"#;
    let b = eventbridge("AWS API Call via CloudTrail", "aws.s3", delete_bucket);
    assert_eq!(body(&b), vec![rec("s3-root-delete")]);
    // ... and through SNS around EventBridge.
    assert_eq!(body(&sns(&b)), vec![rec("s3-root-delete")]);
    // An Object Created notification still names an object, whatever its source.
    let created = eventbridge(
        "Object Created",
        "aws.s3",
        r#"{"version":"0","bucket":{"name":"trail"},"object":{"key":"AWSLogs/x.json.gz"}}"#,
    );
    assert_eq!(
        body(&created),
        vec![Got::Object("trail".into(), "AWSLogs/x.json.gz".into())]
    );
    let bad = eventbridge("Object Created", "aws.s3", r#"{"version":"0"}"#);
    assert_eq!(body(&bad), vec![Got::Error("malformed")]);
}

#[test]
fn eventbridge_s3_object_created_keeps_key_as_is() {
    let b = eventbridge(
        "Object Created",
        "aws.s3",
        r#"{"version":"0","bucket":{"name":"trail-bucket"},"object":{"key":"AWSLogs/111122223333/CloudTrail/us-east-1/a+b%20c.json.gz","size":512},"reason":"PutObject"}"#,
    );
    assert_eq!(
        body(&b),
        vec![Got::Object(
            "trail-bucket".into(),
            "AWSLogs/111122223333/CloudTrail/us-east-1/a+b%20c.json.gz".into()
        )]
    );
}

#[test]
fn s3_notification_key_is_url_decoded_with_plus_as_space() {
    assert_eq!(
        body(S3_NOTIFICATION),
        vec![Got::Object(
            "trail-bucket".into(),
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/my file:1.json.gz".into()
        )]
    );
}

#[test]
fn s3_test_event_is_skipped() {
    let b = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-05-01T12:00:00.000Z","Bucket":"trail-bucket","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}"#;
    assert_eq!(body(b), vec![Got::Skipped(Skip::S3TestEvent)]);
    assert_eq!(body(&sns(b)), vec![Got::Skipped(Skip::S3TestEvent)]);
}

#[test]
fn sns_wrapped_bodies_unwrap_recursively() {
    let eb = eventbridge(
        "AWS Console Sign In via CloudTrail",
        "aws.signin",
        ROOT_LOGIN,
    );
    assert_eq!(
        body(&sns(&eb)),
        vec![rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5")]
    );
    assert_eq!(
        body(&sns(&sns(ROOT_LOGIN))),
        vec![rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5")]
    );
    assert!(matches!(body(&sns(S3_NOTIFICATION))[0], Got::Object(..)));
}

#[test]
fn sns_nesting_is_bounded() {
    let mut b = ROOT_LOGIN.to_string();
    for _ in 0..=MAX_NESTING {
        b = sns(&b);
    }
    assert_eq!(body(&b), vec![Got::Error("too_deep")]);
}

#[test]
fn sns_subscription_confirmation_is_skipped_and_missing_message_is_an_error() {
    let conf = r#"{"Type":"SubscriptionConfirmation","MessageId":"x","Token":"t","TopicArn":"arn:aws:sns:us-east-1:111122223333:t","Message":"You have chosen to subscribe"}"#;
    assert_eq!(body(conf), vec![Got::Skipped(Skip::SnsControl)]);
    assert_eq!(
        body(r#"{"Type":"Notification"}"#),
        vec![Got::Error("malformed")]
    );
}

#[test]
fn cloudtrail_sns_notice_names_objects() {
    let b = r#"{"s3Bucket":"trail-bucket","s3ObjectKey":["AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/a.json.gz","AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/b.json.gz"]}"#;
    let got = body(&sns(b));
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[1],
        Got::Object(
            "trail-bucket".into(),
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/b.json.gz".into()
        )
    );
    assert_eq!(body(r#"{"s3Bucket":"b"}"#), vec![Got::Error("malformed")]);
}

#[test]
fn records_array_of_cloudtrail_records() {
    let b = format!(
        r#"{{"Records":[{ROOT_LOGIN},{{"eventVersion":"1.08","eventID":"second","eventName":"ListBuckets"}}]}}"#
    );
    assert_eq!(
        body(&b),
        vec![rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5"), rec("second")]
    );
}

#[test]
fn a_bad_element_does_not_hide_the_others() {
    let b = format!(r#"{{"Records":[{ROOT_LOGIN},"oops",{{"eventID":"third"}}]}}"#);
    assert_eq!(
        body(&b),
        vec![
            rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5"),
            Got::Error("invalid_json"),
            rec("third")
        ]
    );
}

/// An element that is not a CloudTrail record is an error naming its index,
/// in a body and in a streamed log file; the rest of the array still counts.
#[test]
fn records_elements_that_are_not_records_are_errors_with_their_index() {
    let b = format!(r#"{{"Records":[{{}},{ROOT_LOGIN},{{"hello":1}},[],{{"eventID":"last"}}]}}"#);
    let want = vec![
        Got::Error("not_a_record"),
        rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5"),
        Got::Error("not_a_record"),
        Got::Error("not_a_record"),
        rec("last"),
    ];
    assert_eq!(body(&b), want);
    let (got, res) = reader(gzip(b.as_bytes()));
    assert_eq!((got, res), (want, Ok(())));
    let mut messages = Vec::new();
    decode_body(r#"{"Records":[{}]}"#, &mut |i| {
        messages.push(i.unwrap_err().to_string())
    });
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0] == "Records array, element 0: not a CloudTrail record (keys: none)",
        "{}",
        messages[0]
    );
}

/// A body decoded with a prefilter: what it passes over comes out unparsed
/// only where the body's parse already proved the record JSON (an
/// EventBridge detail, a plain record in `Records`, also inside SNS); a
/// bare record, an S3 notification's record and everything else are
/// parsed as without it. With a prefilter that says yes, nothing changes.
#[test]
fn a_filtered_body_passes_over_only_records_its_parse_has_checked() {
    let filtered = |s: &str, parse: bool| collect(|out| decode_body_filtered(s, &|_| parse, out));
    let id = "deb1e1f9-c99b-4612-8e9f-21f93b5daaa5";
    let unparsed = || Got::Unparsed(id.into());
    let event = eventbridge(
        "AWS Console Sign In via CloudTrail",
        "aws.signin",
        ROOT_LOGIN,
    );
    let records = format!(r#"{{"Records":[{ROOT_LOGIN},{{"eventID":"second"}}]}}"#);
    let cases: Vec<(String, Vec<Got>)> = vec![
        (event.clone(), vec![unparsed()]),
        (sns(&event), vec![unparsed()]),
        (format!("[{event},{event}]"), vec![unparsed(), unparsed()]),
        // The second element is not a plain record: parsed (and kept).
        (records.clone(), vec![unparsed(), rec("second")]),
        (sns(&records), vec![unparsed(), rec("second")]),
        (ROOT_LOGIN.to_owned(), vec![rec(id)]),
        (
            S3_NOTIFICATION.to_owned(),
            vec![Got::Object(
                "trail-bucket".into(),
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/my file:1.json.gz".into(),
            )],
        ),
        // Not a record: still the error it always was.
        (
            eventbridge("AWS API Call via CloudTrail", "aws.s3", r#"{"hello":1}"#),
            vec![Got::Error("not_a_record")],
        ),
        (
            format!("{}x", &ROOT_LOGIN[..ROOT_LOGIN.len() - 1]),
            vec![Got::Error("invalid_json")],
        ),
    ];
    for (b, want) in cases {
        assert_eq!(filtered(&b, false), want, "{b}");
        assert_eq!(filtered(&b, true), body(&b), "{b}");
    }
}

/// Every corpus record, as EventBridge delivers it: passed over where the
/// prefilter says no, parsed where it says yes, the same records either way.
#[test]
fn every_corpus_record_as_an_eventbridge_event_is_passed_over_or_parsed() {
    let records = crate::fixtures::corpus_records();
    let mut passed = 0;
    for r in &records {
        let b = eventbridge("AWS API Call via CloudTrail", "aws.iam", r);
        let parsed = body(&b);
        let none = collect(|out| decode_body_filtered(&b, &|_| false, out));
        let all = collect(|out| decode_body_filtered(&b, &|_| true, out));
        assert_eq!(all, parsed, "{r}");
        match &none[..] {
            [Got::Unparsed(id)] => {
                passed += 1;
                assert_eq!(parsed, vec![Got::Record(id.clone())], "{r}");
            }
            _ => assert_eq!(none, parsed, "{r}"),
        }
    }
    assert!(passed > 1000, "{passed} of {}", records.len());
}

#[test]
fn digest_files_are_skipped() {
    let b = r#"{"awsAccountId":"111122223333","digestStartTime":"2024-05-01T11:00:00Z","digestEndTime":"2024-05-01T12:00:00Z","digestS3Bucket":"trail-bucket","digestS3Object":"AWSLogs/x.json.gz","digestPublicKeyFingerprint":"abc","digestSignatureAlgorithm":"SHA256withRSA","logFiles":[]}"#;
    assert_eq!(body(b), vec![Got::Skipped(Skip::Digest)]);
}

#[test]
fn cloudwatch_logs_subscription_data() {
    let data = serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": "111122223333",
        "logGroup": "aws-cloudtrail-logs-111122223333",
        "logStream": "111122223333_CloudTrail_us-east-1",
        "subscriptionFilters": ["rootwatch"],
        "logEvents": [
            {"id": "3719", "timestamp": 1405525767000u64, "message": ROOT_LOGIN},
            {"id": "3720", "timestamp": 1405525768000u64, "message": "{\"eventID\":\"b\",\"eventName\":\"ListUsers\"}"}
        ]
    })
    .to_string();
    assert_eq!(
        body(&data),
        vec![rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5"), rec("b")]
    );
    let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;
    assert_eq!(body(control), vec![Got::Skipped(Skip::ControlMessage)]);
}

#[test]
fn errors_name_the_problem() {
    assert_eq!(body("not json"), vec![Got::Error("invalid_json")]);
    assert_eq!(body(""), vec![Got::Error("invalid_json")]);
    let got = collect(|out| decode_body(r#"{"hello":"world","foo":1}"#, out));
    assert_eq!(got, vec![Got::Error("unknown_envelope")]);
    let mut msg = String::new();
    decode_body(r#"{"hello":"world","foo":1}"#, &mut |i: Result<
        Item<'_>,
        DecodeError,
    >| {
        msg = i.unwrap_err().to_string()
    });
    assert!(msg.contains("foo, hello"), "{msg}");
    assert_eq!(body("42"), vec![Got::Error("invalid_json")]);
}

#[test]
fn top_level_array_of_bodies() {
    let b = format!("[{ROOT_LOGIN}, {}]", sns(ROOT_LOGIN));
    assert_eq!(body(&b).len(), 2);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn reader(bytes: Vec<u8>) -> (Vec<Got>, Result<(), &'static str>) {
    let mut res = Ok(());
    let got =
        collect(|out| res = decode_reader(std::io::Cursor::new(bytes), out).map_err(|e| e.kind()));
    (got, res)
}

#[test]
fn reader_streams_gzip_log_files() {
    let file =
        format!(r#"{{"Records":[{ROOT_LOGIN},{{"eventID":"two","eventName":"ListBuckets"}}]}}"#);
    let (got, res) = reader(gzip(file.as_bytes()));
    assert_eq!(res, Ok(()));
    assert_eq!(
        got,
        vec![rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5"), rec("two")]
    );
}

#[test]
fn reader_handles_documents_back_to_back_and_json_lines() {
    let data = r#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":1,"message":"{\"eventID\":\"a\",\"eventName\":\"X\"}"}]}{"messageType":"CONTROL_MESSAGE","logEvents":[]}{"messageType":"DATA_MESSAGE","logEvents":[{"id":"2","timestamp":2,"message":"{\"eventID\":\"b\",\"eventName\":\"Y\"}"}]}"#;
    let (got, res) = reader(gzip(data.as_bytes()));
    assert_eq!(res, Ok(()));
    assert_eq!(
        got,
        vec![rec("a"), Got::Skipped(Skip::ControlMessage), rec("b")]
    );

    let lines = format!("{ROOT_LOGIN}\n{}\n\n", sns(ROOT_LOGIN));
    let (got, res) = reader(lines.into_bytes());
    assert_eq!(res, Ok(()));
    assert_eq!(got.len(), 2);
}

#[test]
fn reader_reports_truncated_streams_after_the_good_part() {
    let file = format!(r#"{{"Records":[{ROOT_LOGIN},{{"eventID":"tw"#);
    let (got, res) = reader(file.into_bytes());
    assert_eq!(got, vec![rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5")]);
    assert_eq!(res, Err("invalid_json"));
    let mut gz = gzip(ROOT_LOGIN.as_bytes());
    gz.truncate(gz.len() / 2);
    let (_, res) = reader(gz);
    assert!(res.is_err());
}

/// Hands out one byte per read, as a slow network stream may.
struct Trickle(std::io::Cursor<Vec<u8>>);

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn gzip_is_recognised_when_the_first_read_is_short() {
    let file = format!(r#"{{"Records":[{ROOT_LOGIN}]}}"#);
    let mut res = Ok(());
    let got = collect(|out| {
        res = decode_reader(Trickle(std::io::Cursor::new(gzip(file.as_bytes()))), out)
            .map_err(|e| e.kind())
    });
    assert_eq!(res, Ok(()));
    assert_eq!(got, vec![rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5")]);
    // A one-byte input is not gzip and not JSON either: an error, not a panic.
    let got = collect(|out| {
        res = decode_reader(Trickle(std::io::Cursor::new(vec![0x1f])), out).map_err(|e| e.kind())
    });
    assert!(got.is_empty());
    assert!(res.is_err());
}

fn lines(bytes: Vec<u8>) -> Vec<(u64, Got)> {
    let mut got = Vec::new();
    let res = decode_lines(std::io::Cursor::new(bytes), &mut |line, item| {
        got.push((
            line,
            match item {
                Ok(Item::Record(r)) => Got::Record(r.event_id.get().unwrap_or("-").to_owned()),
                Ok(Item::Object(o)) => Got::Object(o.bucket, o.key),
                Ok(Item::Skipped(s)) => Got::Skipped(s),
                Ok(Item::Unparsed(_)) => unreachable!("decode_lines parses every line"),
                Err(e) => Got::Error(e.kind()),
            },
        ))
    });
    assert!(res.is_ok(), "{res:?}");
    got
}

/// One line that is not UTF-8 is an error with its number; the lines after
/// it are still read.
#[test]
fn json_lines_survive_a_line_of_invalid_utf8() {
    let mut data = Vec::new();
    data.extend_from_slice(ROOT_LOGIN.as_bytes());
    data.extend_from_slice(b"\n{\"eventID\":\"bad\xff\xfe\",\"eventName\":\"X\"}\r\n\n");
    data.extend_from_slice(
        br#"{"eventID":"after","eventName":"ListBuckets","eventSource":"s3.amazonaws.com"}"#,
    );
    data.extend_from_slice(b"\nnot json\n");
    data.extend_from_slice(sns(ROOT_LOGIN).as_bytes());
    assert_eq!(
        lines(data.clone()),
        vec![
            (1, rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5")),
            (2, Got::Error("invalid_utf8")),
            (4, rec("after")),
            (5, Got::Error("invalid_json")),
            (6, rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5")),
        ]
    );
    // The same through gzip.
    assert_eq!(lines(gzip(&data)).len(), 5);
}

#[test]
fn reader_decodes_s3_notifications_and_other_bodies() {
    let (got, res) = reader(S3_NOTIFICATION.as_bytes().to_vec());
    assert_eq!(res, Ok(()));
    assert!(matches!(got[0], Got::Object(..)));
    let (got, _) = reader(sns(ROOT_LOGIN).into_bytes());
    assert_eq!(got, vec![rec("deb1e1f9-c99b-4612-8e9f-21f93b5daaa5")]);
    let (got, _) = reader(br#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#.to_vec());
    assert_eq!(got, vec![Got::Skipped(Skip::S3TestEvent)]);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    pub(super) fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            "[a-zA-Z:/ .{}\"\\\\-]{0,12}".prop_map(serde_json::Value::from),
            prop_oneof![
                Just("Root"),
                Just("ConsoleLogin"),
                Just("Notification"),
                Just("aws.s3"),
                Just("Object Created"),
                Just("DATA_MESSAGE"),
                Just("s3:TestEvent"),
                Just("AWS API Call via CloudTrail"),
                Just("aws:s3"),
                Just("Success"),
            ]
            .prop_map(serde_json::Value::from),
        ];
        let keys = prop_oneof![
            Just("Records".to_string()),
            Just("detail-type".to_string()),
            Just("detail".to_string()),
            Just("source".to_string()),
            Just("Type".to_string()),
            Just("Message".to_string()),
            Just("s3Bucket".to_string()),
            Just("s3ObjectKey".to_string()),
            Just("s3".to_string()),
            Just("bucket".to_string()),
            Just("object".to_string()),
            Just("key".to_string()),
            Just("name".to_string()),
            Just("messageType".to_string()),
            Just("logEvents".to_string()),
            Just("message".to_string()),
            Just("eventID".to_string()),
            Just("eventName".to_string()),
            Just("eventSource".to_string()),
            Just("userIdentity".to_string()),
            Just("type".to_string()),
            Just("sessionContext".to_string()),
            Just("responseElements".to_string()),
            Just("ConsoleLogin".to_string()),
            Just("Event".to_string()),
            "[a-z]{1,6}",
        ];
        leaf.prop_recursive(5, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(keys.clone(), inner.clone(), 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                // JSON nested as a string, the way SNS and CloudWatch Logs carry it.
                inner.prop_map(|v| serde_json::Value::from(v.to_string())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            decode_body(&text, &mut |_| {});
            let _ = decode_reader(std::io::Cursor::new(bytes), &mut |_| {});
        }

        #[test]
        fn arbitrary_json_never_panics(v in arb_json()) {
            let text = v.to_string();
            let mut records = 0usize;
            decode_body(&text, &mut |i| { if let Ok(Item::Record(r)) = i { records += 1; let _ = r.time(); let _ = r.event_key(); } });
            let _ = decode_reader(std::io::Cursor::new(text.clone().into_bytes()), &mut |_| {});
            let _ = decode_reader(std::io::Cursor::new(gzip(text.as_bytes())), &mut |_| {});
            prop_assert!(records <= text.len());
        }
    }
}

/// The bucket's region travels with the object reference when the
/// notification carries it, so the object is fetched from that region.
#[test]
fn object_refs_carry_the_notifications_region() {
    let regions = |body: &str| {
        let mut got = Vec::new();
        decode_body(body, &mut |item: Result<Item<'_>, DecodeError>| {
            if let Ok(Item::Object(o)) = item {
                got.push(o.region);
            }
        });
        got
    };
    let in_eu = S3_NOTIFICATION.replace(r#""awsRegion":"us-east-1""#, r#""awsRegion":"eu-west-1""#);
    assert_eq!(regions(&in_eu), [Some("eu-west-1".to_owned())]);
    let detail = r#"{"version":"0","bucket":{"name":"trail-bucket"},"object":{"key":"AWSLogs/a.json.gz","size":1}}"#;
    let eb = eventbridge("Object Created", "aws.s3", detail)
        .replace(r#""region":"us-east-1""#, r#""region":"ap-southeast-2""#);
    assert_eq!(regions(&eb), [Some("ap-southeast-2".to_owned())]);
    // CloudTrail's own notice names no region: the bucket is looked up.
    let notice = r#"{"s3Bucket":"trail-bucket","s3ObjectKey":["AWSLogs/a.json.gz"]}"#;
    assert_eq!(regions(notice), [None]);
}

/// CloudTrail log files go through a scan that splits the `Records` array
/// without a parser; what comes out must be what the parser alone makes
/// of the same bytes (but for a record that is not JSON inside: the parser
/// stopped there, the scan reads on), and a record passed over unparsed
/// must be one the parser would have made a record of.
mod log_files {
    use super::*;
    use proptest::prelude::*;

    /// The parser alone, as every stream was read before the scan.
    fn parser(bytes: &[u8]) -> (Vec<Got>, Result<(), &'static str>) {
        let mut res = Ok(());
        let got = collect(|out| {
            res = maybe_gunzip(std::io::Cursor::new(bytes.to_vec()))
                .map_err(DecodeError::from)
                .and_then(|plain| decode_documents(plain, 0, false, out))
                .map_err(|e| e.kind())
        });
        (got, res)
    }

    /// The scan, reading `bytes` whole or a byte at a time, parsing every
    /// record or none it may pass over.
    fn scan(bytes: &[u8], trickle: bool, parse: bool) -> (Vec<Got>, Result<(), &'static str>) {
        let mut res = Ok(());
        let filter = move |_: &[u8]| parse;
        let got = collect(|out| {
            let r = if trickle {
                decode_reader_filtered(Trickle(std::io::Cursor::new(bytes.to_vec())), &filter, out)
            } else {
                decode_reader_filtered(std::io::Cursor::new(bytes.to_vec()), &filter, out)
            };
            res = r.map_err(|e| e.kind());
        });
        (got, res)
    }

    fn as_parsed(got: Vec<Got>) -> Vec<Got> {
        got.into_iter()
            .map(|g| match g {
                Got::Unparsed(id) => Got::Record(id),
                g => g,
            })
            .collect()
    }

    /// Whatever the bytes, the scan agrees with the parser; when it parses
    /// everything it is the parser's output exactly.
    fn agree(bytes: &[u8]) {
        let expected = parser(bytes);
        for trickle in [false, true] {
            let all = scan(bytes, trickle, true);
            assert_eq!(all, expected, "{}", String::from_utf8_lossy(bytes));
            let (none, res) = scan(bytes, trickle, false);
            assert_eq!(
                (as_parsed(none), res),
                expected,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    use crate::fixtures::corpus_records;

    #[test]
    fn every_corpus_as_log_files() {
        let records = corpus_records();
        assert!(records.len() > 1000);
        // As CloudTrail writes them, in files of 50, and with whitespace
        // wherever JSON allows it.
        let mut files = String::new();
        for chunk in records.chunks(50) {
            files.push_str(&format!(r#"{{"Records":[{}]}}"#, chunk.join(",")));
        }
        agree(files.as_bytes());
        agree(&gzip(files.as_bytes()));
        let spaced = format!(
            " \n{{ \"Records\" :\t[ {} ] }}\r\n",
            records[..20].join(" ,\n ")
        );
        agree(spaced.as_bytes());
        // A plain record the filter passed over really is one.
        let (got, res) = scan(files.as_bytes(), false, false);
        assert_eq!(res, Ok(()));
        assert!(got.iter().filter(|g| matches!(g, Got::Unparsed(_))).count() > 1000);
    }

    #[test]
    fn shapes_that_hand_over_to_the_parser() {
        let r = ROOT_LOGIN;
        let s3 = &S3_NOTIFICATION[12..S3_NOTIFICATION.len() - 2];
        let tricky = r#"{"eventVersion":"1.08","eventID":"x}{\"]","eventName":"a{b","userIdentity":{"type":"IAMUser"},"requestParameters":{"p":["}",{"q":"\\"}]}}"#;
        for doc in [
            String::new(),
            "  ".into(),
            r#"{"Records":[]}"#.into(),
            r#"{ "Records" : [ ] }"#.into(),
            format!(r#"{{"Records":[{r},{tricky}]}}"#),
            format!(r#"{{"Records":[{r}]}}{{"Records":[{tricky}]}} {}"#, sns(r)),
            format!(r#"{}{{"Records":[{r}]}}"#, sns(r)),
            // S3 notifications name objects, whatever the filter says.
            format!(r#"{{"Records":[{s3},{r}]}}"#),
            // A trailing comma, an element that is not an object.
            format!(r#"{{"Records":[{r},]}}"#),
            format!(r#"{{"Records":[{r},5,{r},"x",[{r}]]}}"#),
            format!(r#"{{"Records":[5,{r}]}}"#),
            // Keys after the array, before it, or junk after it.
            format!(r#"{{"Records":[{r}],"x":{{"Records":1}}}}"#),
            format!(r#"{{"x":1,"Records":[{r}]}}"#),
            format!(r#"{{"Records":[{r}] x"#),
            format!(r#"{{"Records":[{r}]] "#),
            format!(r#"{{"Records":[{r} {r}]}}"#),
            format!(r#"{{"Records":{{}}}} {{"Records":[{r}]}}"#),
            format!(r#"{{"Recordsx":[{r}]}}"#),
            format!(r#"{{"Record":[{r}]}}"#),
            // Cut short anywhere.
            format!(r#"{{"Records":[{r},{r}"#),
            format!(r#"{{"Records":[{r},{}"#, &r[..100]),
            format!(r#"{{"Records":[{r}"#),
            r#"{"Rec"#.into(),
            // Escapes: the filter is not asked to judge them away.
            format!(r#"{{"Records":[{}]}}"#, r.replace("Root", "R\\u006fot")),
        ] {
            agree(doc.as_bytes());
        }
        // Not UTF-8 inside the second record.
        let mut bad = format!(r#"{{"Records":[{r},{r}]}}"#).into_bytes();
        let at = bad.len() - 30;
        bad[at] = 0xff;
        agree(&bad);
    }

    #[test]
    fn element_errors_keep_their_index_after_a_hand_over() {
        let r = ROOT_LOGIN;
        let doc = format!(r#"{{"Records":[{r},{r},5,{r}]}}"#);
        let mut errors = Vec::new();
        let mut records = 0;
        decode_reader_filtered(
            std::io::Cursor::new(doc.into_bytes()),
            &|_| false,
            &mut |item| match item {
                Err(e) => errors.push(e.to_string()),
                Ok(_) => records += 1,
            },
        )
        .unwrap();
        assert_eq!(records, 3);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("Records array, element 2:"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn event_time_is_read_from_the_bytes() {
        let t = event_time(ROOT_LOGIN.as_bytes()).unwrap();
        assert_eq!(t.to_rfc3339(), "2014-07-16T15:49:27+00:00");
        assert_eq!(
            event_time(br#"{"eventTime" : "2014-07-16T15:49:27.5Z"}"#)
                .unwrap()
                .timestamp(),
            1405525767
        );
        assert!(event_time(br#"{"eventTime":1}"#).is_none());
        assert!(event_time(br#"{"eventTime":"2014\u002d07"}"#).is_none());
        assert!(event_time(b"{}").is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Log files of arbitrary elements (records, notifications, JSON of
        /// any shape), cut anywhere, with any byte spoiled.
        #[test]
        fn the_scan_agrees_with_the_parser(
            picks in prop::collection::vec((0usize..4, 0usize..10_000, super::properties::arb_json()), 0..6),
            cut in proptest::option::of(0usize..100_000),
            spoil in proptest::option::of((0usize..100_000, any::<u8>())),
        ) {
            let records = corpus_records();
            let s3 = &S3_NOTIFICATION[12..S3_NOTIFICATION.len() - 2];
            let elements: Vec<String> = picks
                .iter()
                .map(|(kind, i, v)| match kind {
                    0 | 1 => records[i % records.len()].clone(),
                    2 => s3.to_owned(),
                    _ => v.to_string(),
                })
                .collect();
            let mut bytes = format!(r#"{{"Records":[{}]}}"#, elements.join(",")).into_bytes();
            if let Some((at, b)) = spoil {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            let expected = parser(&bytes);
            let all = scan(&bytes, false, true);
            let (none, none_res) = scan(&bytes, false, false);
            let none = (as_parsed(none), none_res);
            if spoil.is_none() {
                prop_assert_eq!(&all, &expected);
                prop_assert_eq!(&none, &expected);
            } else {
                // Where the parser stops at text that is not JSON inside a
                // record, the scan reports that record alone and reads on
                // (the filter, passing over a record, does not look inside
                // it): what the parser got out comes out the same first.
                prop_assert!(all.0.starts_with(&expected.0), "{:?} / {:?}", all, expected);
                prop_assert!(none.0.starts_with(&expected.0), "{:?} / {:?}", none, expected);
                if expected.1.is_err() {
                    prop_assert!(all.1.is_err() || all.0.iter().any(|g| matches!(g, Got::Error(_))));
                } else {
                    prop_assert_eq!(&all, &expected);
                }
            }
        }
    }
}

/// Documents that are not log files (JSON lines on standard input, arrays,
/// EventBridge events back to back) are read in blocks and decoded from
/// memory; what comes out, errors and their positions included, must be
/// what the streaming parser made of the same bytes.
mod document_streams {
    use super::*;
    use proptest::prelude::*;

    /// Reads at most the next of `sizes` bytes at a time (cycling).
    struct Chunked {
        bytes: std::io::Cursor<Vec<u8>>,
        sizes: Vec<usize>,
        next: usize,
    }

    impl std::io::Read for Chunked {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.sizes[self.next % self.sizes.len()]
                .max(1)
                .min(buf.len());
            self.next += 1;
            self.bytes.read(&mut buf[..n])
        }
    }

    type Outcome = (Vec<Got>, Result<(), String>);

    /// How every stream was read before: the log-file scan, then the
    /// streaming parser from where it handed over.
    fn streamed(bytes: &[u8]) -> Outcome {
        let mut res = Ok(());
        let got = collect(|out| {
            let mut plain = maybe_gunzip(std::io::Cursor::new(bytes.to_vec())).unwrap();
            res = match super::super::records::read_log_files(&mut plain, &|_| true, out) {
                Ok(None) => Ok(()),
                Ok(Some(from)) => decode_documents(
                    super::super::records::resume(from.prefix, plain),
                    from.first_index,
                    from.skip_first,
                    out,
                ),
                Err(e) => Err(e),
            }
            .map_err(|e| e.to_string());
        });
        (got, res)
    }

    fn buffered(bytes: &[u8], sizes: &[usize], parse: bool) -> Outcome {
        let mut res = Ok(());
        let filter = move |_: &[u8]| parse;
        let reader = Chunked {
            bytes: std::io::Cursor::new(bytes.to_vec()),
            sizes: sizes.to_vec(),
            next: 0,
        };
        let got = collect(|out| {
            res = decode_reader_filtered(reader, &filter, out).map_err(|e| e.to_string());
        });
        (got, res)
    }

    fn as_parsed((got, res): Outcome) -> Outcome {
        let got = got
            .into_iter()
            .map(|g| match g {
                Got::Unparsed(id) => Got::Record(id),
                g => g,
            })
            .collect();
        (got, res)
    }

    fn same(bytes: &[u8], sizes: &[usize]) -> Result<(), TestCaseError> {
        let expected = streamed(bytes);
        let text = String::from_utf8_lossy(bytes);
        prop_assert_eq!(&buffered(bytes, sizes, true), &expected, "{}", text);
        prop_assert_eq!(
            &as_parsed(buffered(bytes, sizes, false)),
            &expected,
            "{}",
            text
        );
        Ok(())
    }

    fn streams() -> Vec<Vec<u8>> {
        let r = ROOT_LOGIN;
        let records = crate::fixtures::corpus_records();
        let lines = records[..200].join("\n");
        let pretty: Vec<String> = records[..20]
            .iter()
            .map(|r| {
                serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(r).unwrap())
                    .unwrap()
            })
            .collect();
        let eb = eventbridge("AWS API Call via CloudTrail", "aws.signin", r);
        let mut out: Vec<Vec<u8>> = [
            lines.clone(),
            format!("{lines}\n"),
            pretty.join("\n"),
            pretty.join(""),
            format!("[{r},{r}]\n[{}]", sns(r)),
            format!("{eb}\n{}\n{eb}", sns(&eb)),
            format!("{r}\r\n\t {r}  "),
            String::new(),
            " \n ".into(),
            // Errors end the stream, with their line and column.
            format!("{r}\n{r}\n{{\"eventVersion\": x}}\n{r}"),
            format!("{r}\n5\n{r}"),
            format!("{r}\n\"text\"\n{r}"),
            format!("{r}\n{{\"Records\":5}}\n{r}"),
            format!("{r}\n{{\"Records\":[{r}],\"Records\":5}}\n{r}"),
            format!("{r}\n{{\"x\":1,\"Records\":[{r}]}}\n{r}"),
            format!("{r}\n{{\"Rec\\u006frds\":[{r}]}}\n{r}"),
            format!("{r}\n{{\"eventVersion\":\"1\",\"Records\":[{r}]}}"),
            format!("{r}\n{{\"Records\":[{r},5]}} {r}"),
            format!("{r}\n{}", &r[..r.len() - 5]),
            format!("{r}\n{r}}}"),
            format!("{r}\n{{}}{{}}[]"),
            format!("{r}\n{}", r.replace("Root", "R\\u006fot")),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect();
        // Not UTF-8 inside the second document.
        let mut bad = format!("{r}\n{r}\n{r}").into_bytes();
        let at = r.len() + 40;
        bad[at] = 0xff;
        out.push(bad);
        out
    }

    #[test]
    fn every_stream_whole_in_chunks_and_a_byte_at_a_time() {
        for bytes in streams() {
            for sizes in [&[1 << 20][..], &[1], &[7, 3, 1000], &[4096]] {
                same(&bytes, sizes).unwrap();
            }
        }
    }

    #[test]
    fn a_syntax_error_names_the_line_it_is_on() {
        let r = ROOT_LOGIN;
        let bytes = format!("{r}\n{r}\n{r}\n{{\"eventVersion\": x}}\n");
        let (got, res) = buffered(bytes.as_bytes(), &[1 << 20], true);
        assert_eq!(got.len(), 3);
        let err = res.unwrap_err();
        assert!(err.contains("line 4 column 18"), "{err}");
    }

    proptest! {
        #[test]
        fn any_chunking_of_any_stream(
            pick in 0usize..64,
            sizes in proptest::collection::vec(1usize..5000, 1..8),
            cut in proptest::option::of(0usize..100_000),
        ) {
            let streams = streams();
            let mut bytes = streams[pick % streams.len()].clone();
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            same(&bytes, &sizes)?;
        }
    }
}

/// Errors of a log file's elements and of the stream around them, as the
/// S3 reader gathers them: kept up to the cap in order, counted in full.
#[test]
fn errors_keep_the_first_and_count_every_one() {
    let mut text = String::from(r#"{"Records":["#);
    text.push_str(&["{}"; 151].join(","));
    text.push_str("]}");
    let mut errors = Errors::default();
    let stream = decode_reader(text.as_bytes(), &mut |item| {
        if let Err(e) = item {
            errors.push(e);
        }
    });
    assert!(stream.is_ok());
    assert_eq!(errors.total(), 151);
    assert_eq!(errors.kept().len(), MAX_KEPT_ERRORS);
    assert!(
        errors.kept()[0]
            .to_string()
            .starts_with("Records array, element 0:")
    );
    assert_eq!(errors.by_kind()["not_a_record"], 151);
    assert_eq!(errors.not_kept()["not_a_record"], 51);

    let mut more = Errors::default();
    more.push(DecodeError::TooDeep);
    errors.append(more);
    assert_eq!(errors.total(), 152);
    assert_eq!(errors.kept().len(), MAX_KEPT_ERRORS);
    assert_eq!(errors.not_kept()["too_deep"], 1);

    let mut few = Errors::default();
    few.push(DecodeError::TooDeep);
    let mut other = Errors::default();
    other.push(DecodeError::LineTooLong);
    few.append(other);
    assert_eq!(few.kept().len(), 2);
    assert!(few.not_kept().is_empty());
}
