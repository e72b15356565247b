#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = backup_apiserver::fuzzing::run("managed_fields", data) {
        panic!("managed_fields: {e}");
    }
});
