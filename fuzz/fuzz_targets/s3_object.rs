#![no_main]

#[allow(dead_code)]
#[path = "../src/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::s3_object(data));
