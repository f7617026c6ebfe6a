//! The SDK's own tests: the frozen `#[repr(C)]` layouts, the JSON protocol,
//! and the hostile plugin driven through the real loader.

use clemhost_plugin_sdk::abi::*;
use clemhost_plugin_sdk::host::{check_plugin_table, LoadError, Plugin};
use clemhost_plugin_sdk::*;
use std::mem::{align_of, offset_of, size_of};
use std::path::PathBuf;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

/// ABI v1 as shipped, on 64-bit targets. A change here breaks every plugin
/// built so far: grow the tables at the end and bump nothing, or bump
/// ABI_VERSION and the entry symbol.
#[test]
#[cfg(target_pointer_width = "64")]
fn repr_c_layouts_are_frozen() {
    assert_eq!((size_of::<Str>(), align_of::<Str>()), (16, 8));
    assert_eq!((offset_of!(Str, ptr), offset_of!(Str, len)), (0, 8));
    assert_eq!(size_of::<PluginBuf>(), 24);
    assert_eq!(
        (
            offset_of!(PluginBuf, ptr),
            offset_of!(PluginBuf, len),
            offset_of!(PluginBuf, cap)
        ),
        (0, 8, 16)
    );
    assert_eq!(size_of::<HostApi>(), 24);
    assert_eq!(
        (
            offset_of!(HostApi, struct_size),
            offset_of!(HostApi, abi_version),
            offset_of!(HostApi, max_log_level),
            offset_of!(HostApi, log)
        ),
        (0, 8, 12, 16)
    );
    assert_eq!(size_of::<PluginApi>(), 56);
    assert_eq!(
        (
            offset_of!(PluginApi, struct_size),
            offset_of!(PluginApi, abi_version),
            offset_of!(PluginApi, manifest),
            offset_of!(PluginApi, create_model),
            offset_of!(PluginApi, generate),
            offset_of!(PluginApi, destroy_model),
            offset_of!(PluginApi, free_buf)
        ),
        (0, 8, 16, 24, 32, 40, 48)
    );
    assert_eq!(ENTRY_SYMBOL, b"clemhost_plugin_v1\0");
    assert_eq!(ABI_PROBE_SYMBOL, b"clemhost_plugin_abi_version\0");
    assert_eq!((STATUS_OK, STATUS_ERR, STATUS_PANIC), (0, 1, 2));
}

/// ABI v1's tables grown by one field, as a later SDK will have them.
#[repr(C)]
struct PluginApiNext {
    v1: PluginApi,
    added: extern "C" fn() -> u32,
}
// SAFETY: #[repr(C)], starts with the v1 table.
unsafe impl Table for PluginApiNext {
    const V1_SIZE: usize = PLUGIN_API_V1_SIZE;
}

#[repr(C)]
struct HostApiNext {
    v1: HostApi,
    added: u64,
}
// SAFETY: #[repr(C)], starts with the v1 table.
unsafe impl Table for HostApiNext {
    const V1_SIZE: usize = HOST_API_V1_SIZE;
}

#[test]
fn the_v1_baselines_are_the_tables_of_today() {
    assert_eq!(PLUGIN_API_V1_SIZE, size_of::<PluginApi>());
    assert_eq!(HOST_API_V1_SIZE, size_of::<HostApi>());
}

/// Issue 11, bug 1: a host whose `PluginApi` has grown must still open a
/// plugin built before (its table is only v1 long), and read none of the
/// fields that plugin does not have.
#[test]
fn an_older_plugin_is_accepted_by_a_host_whose_table_grew() {
    let newer_host_size = size_of::<PluginApiNext>();
    assert!(newer_host_size > PLUGIN_API_V1_SIZE);
    let usable = usable_len::<PluginApiNext>(PLUGIN_API_V1_SIZE)
        .expect("a v1 plugin table is accepted by a grown host");
    assert_eq!(usable, PLUGIN_API_V1_SIZE);
    let added_end = offset_of!(PluginApiNext, added) + size_of::<extern "C" fn() -> u32>();
    assert!(usable < added_end, "the added field must not be read");
    // A newer plugin (longer table) is fine for the grown host too.
    assert_eq!(
        usable_len::<PluginApiNext>(newer_host_size + 8),
        Some(newer_host_size)
    );
    // And for the host of today, through the check Plugin::open makes.
    assert_eq!(check_plugin_table(newer_host_size), Ok(PLUGIN_API_V1_SIZE));
    assert_eq!(
        check_plugin_table(PLUGIN_API_V1_SIZE),
        Ok(PLUGIN_API_V1_SIZE)
    );
    // Shorter than v1 lacks a function the host calls: refused, in one line.
    let e = check_plugin_table(PLUGIN_API_V1_SIZE - 8).unwrap_err();
    assert!(
        matches!(&e, LoadError::BadTable(m) if m.contains(&PLUGIN_API_V1_SIZE.to_string())),
        "{e:?}"
    );
}

/// Issue 11, bug 1, other direction: a plugin whose `HostApi` has grown must
/// keep logging through an older host's v1 table.
#[test]
fn a_newer_plugin_accepts_an_older_hosts_table() {
    let usable = usable_len::<HostApiNext>(HOST_API_V1_SIZE)
        .expect("a v1 host table is accepted by a grown plugin");
    assert_eq!(usable, HOST_API_V1_SIZE);
    assert!(usable < offset_of!(HostApiNext, added) + size_of::<u64>());
    assert_eq!(
        usable_len::<HostApiNext>(size_of::<HostApiNext>()),
        Some(size_of::<HostApiNext>())
    );
    assert_eq!(usable_len::<HostApiNext>(HOST_API_V1_SIZE - 8), None);
    let _ = |n: &HostApiNext| (n.v1.abi_version, n.added);
    let _ = |n: &PluginApiNext| (n.v1.abi_version, n.added);
}

#[test]
fn protocol_reads_older_and_newer_json() {
    // A newer plugin may send fields and error kinds this SDK does not know.
    let e: BackendError =
        serde_json::from_str(r#"{"kind":"quota_exhausted","message":"m","future":1}"#).unwrap();
    assert_eq!(e.kind, ErrorKind::Unknown);
    let g: Generation = serde_json::from_str(r#"{"text":"hi","new_field":[1]}"#).unwrap();
    assert_eq!(g.text, "hi");
    // An older plugin may leave optional fields out.
    let m: Manifest = serde_json::from_str(r#"{"name":"x_api"}"#).unwrap();
    assert_eq!(m.capabilities, Capabilities::default());
    let a: GenArgs = serde_json::from_str(r#"{"temperature":0.5,"top_p":0.9}"#).unwrap();
    assert_eq!((a.temperature, a.max_tokens), (0.5, 300));
    assert_eq!(a.extra["top_p"], 0.9);
    let msg: Message =
        serde_json::from_str(r#"{"role":"user","content":"c","image":["a.png"]}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&msg).unwrap(),
        r#"{"role":"user","content":"c","image":["a.png"]}"#
    );
    assert_eq!(
        serde_json::to_string(&ErrorKind::RateLimited).unwrap(),
        r#""rate_limited""#
    );
    assert!(ErrorKind::RateLimited.is_retryable() && !ErrorKind::Auth.is_retryable());
}

/// The directory the workspace's cdylibs are built into (target/<profile>).
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/abi-<hash>
    exe.parent()
        .and_then(|d| d.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn plugin_file(name: &str) -> Option<PathBuf> {
    let p = build_dir().join(format!("lib{name}_api.so"));
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} is not built; run `cargo build --workspace` first (scripts/test does)",
            p.display()
        );
        None
    }
}

fn config(model_config: serde_json::Value) -> ModelConfig {
    let spec = serde_json::json!({"model_name": "m", "backend": "misbehave", "model_config": model_config});
    ModelConfig {
        spec: spec.as_object().unwrap().clone(),
        ..ModelConfig::default()
    }
}

fn request(text: &str) -> GenerateRequest {
    GenerateRequest {
        request_id: "r1".into(),
        messages: vec![Message::new("user", text)],
        ..GenerateRequest::default()
    }
}

#[test]
fn echo_plugin_round_trip() {
    let Some(path) = plugin_file("echo") else {
        return;
    };
    let plugin = Plugin::open(&path).expect("echo opens");
    let m = plugin.manifest();
    assert_eq!((m.name.as_str(), m.abi_version), ("echo_api", ABI_VERSION));
    assert_eq!(m.backends, vec!["echo".to_string()]);
    assert_eq!(m.panic_strategy, "unwind");
    assert_eq!(plugin.table_len(), PLUGIN_API_V1_SIZE);
    let model = plugin
        .create_model(&config(serde_json::json!({})))
        .expect("model opens");
    let g = model
        .generate(&request("hello there"), &AtomicU8::new(0))
        .unwrap();
    assert_eq!(g.text, "hello there");
    assert_eq!(g.response["clem_player"]["response"], "hello there");
}

#[test]
fn a_panic_in_generate_is_an_error_and_poisons_only_that_handle() {
    let Some(path) = plugin_file("misbehave") else {
        return;
    };
    let plugin = Plugin::open(&path).expect("misbehave opens");
    let bad = plugin
        .create_model(&config(serde_json::json!({"misbehave": "panic"})))
        .unwrap();
    let e = bad.generate(&request("hi"), &AtomicU8::new(0)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Panic);
    assert!(
        e.message.contains("asked to panic in generate"),
        "{}",
        e.message
    );
    let again = bad.generate(&request("hi"), &AtomicU8::new(0)).unwrap_err();
    assert_eq!(again.kind, ErrorKind::Panic);
    assert!(again.message.contains("poisoned"), "{}", again.message);
    // A fresh handle of a well-behaved model works.
    let good = plugin.create_model(&config(serde_json::json!({}))).unwrap();
    assert_eq!(
        good.generate(&request("still here"), &AtomicU8::new(0))
            .unwrap()
            .text,
        "still here"
    );
}

#[test]
fn a_panic_while_opening_a_model_is_an_error() {
    let Some(path) = plugin_file("misbehave") else {
        return;
    };
    let plugin = Plugin::open(&path).unwrap();
    let e = plugin
        .create_model(&config(serde_json::json!({"misbehave": "panic_create"})))
        .err()
        .expect("create fails");
    assert_eq!(e.kind, ErrorKind::Panic);
}

#[test]
fn invalid_json_and_oversized_answers_are_typed_errors() {
    let Some(path) = plugin_file("misbehave") else {
        return;
    };
    let plugin = Plugin::open(&path).unwrap();
    let bad = plugin
        .create_model(&config(serde_json::json!({"misbehave": "bad_json"})))
        .unwrap();
    let e = bad.generate(&request("hi"), &AtomicU8::new(0)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidResponse);
    assert!(e.message.contains("invalid JSON"), "{}", e.message);
    let huge = plugin
        .create_model(&config(serde_json::json!({"misbehave": "huge"})))
        .unwrap();
    let e = huge
        .generate(&request("hi"), &AtomicU8::new(0))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidResponse);
    assert!(e.message.contains("more than the limit"), "{}", e.message);
}

#[test]
fn typed_errors_cross_the_boundary() {
    let Some(path) = plugin_file("misbehave") else {
        return;
    };
    let plugin = Plugin::open(&path).unwrap();
    let m = plugin
        .create_model(&config(
            serde_json::json!({"misbehave": "error", "error_kind": "rate_limited"}),
        ))
        .unwrap();
    let e = m.generate(&request("hi"), &AtomicU8::new(0)).unwrap_err();
    assert_eq!(
        (e.kind, e.retry_after_ms),
        (ErrorKind::RateLimited, Some(10))
    );
}

/// The host enforces deadlines by waiting on its own side of a call (the
/// runner's `call_with_deadline`, tested in host/tests/cli/run.rs); for that
/// the plugin must keep answering other calls while one of its calls is stuck.
#[test]
fn a_stuck_call_does_not_block_the_plugins_other_models() {
    let Some(path) = plugin_file("misbehave") else {
        return;
    };
    let plugin = Plugin::open(&path).unwrap();
    let slow = plugin
        .create_model(&config(
            serde_json::json!({"misbehave": "slow", "sleep_ms": 3000}),
        ))
        .unwrap();
    let stuck = std::thread::spawn(move || slow.generate(&request("hi"), &AtomicU8::new(0)));
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let good = plugin.create_model(&config(serde_json::json!({}))).unwrap();
    assert_eq!(
        good.generate(&request("next"), &AtomicU8::new(0))
            .unwrap()
            .text,
        "next"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the other model waited for the stuck call"
    );
    assert_eq!(stuck.join().unwrap().unwrap().text, "hi");
}

#[test]
fn wrong_abi_and_missing_entry_are_refused_with_one_line() {
    if let Some(path) = plugin_file("wrongabi") {
        let e = Plugin::open(&path).unwrap_err();
        assert_eq!(e, LoadError::AbiMismatch { plugin: 2, host: 1 });
        let line = e.to_string();
        assert!(
            line.contains("ABI v2") && line.contains("ABI v1") && !line.contains('\n'),
            "{line}"
        );
    }
    if let Some(path) = plugin_file("noentry") {
        let e = Plugin::open(&path).unwrap_err();
        assert_eq!(e, LoadError::MissingEntry);
    }
    let dir = tempfile_dir();
    let junk = dir.join("libjunk_api.so");
    std::fs::write(&junk, "this is not a library").unwrap();
    let e = Plugin::open(&junk).unwrap_err();
    assert!(matches!(e, LoadError::NotSharedLibrary(_)), "{e:?}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("clemhost-sdk-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
