//! Test fixture: pretends to be a plugin of a future ABI v2. It exports the
//! v2 entry symbol and the ABI probe, but no `clemhost_plugin_v1`, so a v1
//! host must refuse it and name both versions.

/// The (future) v2 entry symbol; never called by a v1 host.
#[no_mangle]
pub extern "C" fn clemhost_plugin_v2(_host: *const u8) -> *const u8 {
    std::ptr::null()
}

/// The ABI probe: says "built for ABI v2".
#[no_mangle]
pub extern "C" fn clemhost_plugin_abi_version() -> u32 {
    2
}
