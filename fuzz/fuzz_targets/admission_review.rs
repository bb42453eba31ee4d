//! Any bytes sent to any admission endpoint: decided without a panic, answered with a
//! response that serialises and is never much larger than the request.
#![no_main]

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    prow_webhook::fuzzing::review_every_endpoint(body);
});
