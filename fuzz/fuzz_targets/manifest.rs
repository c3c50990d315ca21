//! The manifest loader (`flint validate`, `flint dev`): any text, as one or
//! many YAML documents. It must answer with Functions or an error, never a
//! panic, and never blow up memory (YAML aliases can expand a short text
//! into a huge value). What it accepts must be valid by the API's own rules.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(functions) = flint_api::parse_functions(text) {
        for function in &functions {
            assert!(
                flint_api::validate::validate(function).is_ok(),
                "accepted an invalid Function: {function:?}"
            );
        }
    }
});
