#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = backup_apiserver::fuzzing::run("continue_token", data) {
        panic!("continue_token: {e}");
    }
});
