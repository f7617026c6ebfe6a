//! Test fixture: a perfectly good shared library that is not a clemhost
//! plugin (it exports no entry symbol), named like one.

/// Some unrelated exported function.
#[no_mangle]
pub extern "C" fn unrelated_function() -> u32 {
    42
}
