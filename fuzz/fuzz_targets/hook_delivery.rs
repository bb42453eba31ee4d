//! Any bytes as a delivery to prow-hook (the first byte picks the event): every rule a delivery
//! reaches after its signature runs without a panic (prow_api::hook::fuzzing).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prow_api::hook::fuzzing::delivery(data);
});
