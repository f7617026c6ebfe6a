//! `clemhost plugins list | new`: discovery, statuses, trust, scaffolding.

use crate::util::*;
use std::path::Path;

fn copy_plugin(name: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(built_plugin(name), dir.join(format!("lib{name}_api.so"))).unwrap();
}

/// `plugins list --json`, allowed to open the files of ./plugins.
fn list_json(env: &TestEnv, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["plugins", "list", "--json"];
    args.extend_from_slice(extra);
    let out = env
        .cmd()
        .args(&args)
        .env("CLEMHOST_ALLOW_CWD_PLUGINS", "1")
        .output()
        .expect("clemhost runs");
    assert!(
        out.status.success(),
        "plugins list failed: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("plugins list --json prints JSON")
}

fn row<'a>(json: &'a serde_json::Value, name: &str, dir: &Path) -> &'a serde_json::Value {
    json["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name && Path::new(r["file"].as_str().unwrap()).starts_with(dir))
        .unwrap_or_else(|| panic!("no row for {name} under {}: {json:#}", dir.display()))
}

#[test]
fn workspace_plugins_are_listed_ok_and_broken_files_get_one_line_reasons() {
    let env = TestEnv::new();
    let dir = env.path().join("plugins");
    for p in ["echo", "misbehave", "wrongabi", "noentry"] {
        copy_plugin(p, &dir);
    }
    std::fs::write(dir.join("libjunk_api.so"), "not a library").unwrap();
    let json = list_json(&env, &[]);
    let echo = row(&json, "echo", &dir);
    assert_eq!(echo["status"], "ok");
    assert_eq!(echo["abi"], 1);
    assert_eq!(echo["backends"], serde_json::json!(["echo"]));
    assert_eq!(echo["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(row(&json, "misbehave", &dir)["status"], "ok");
    let wrong = row(&json, "wrongabi", &dir)["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        wrong.contains("ABI v2") && wrong.contains("ABI v1"),
        "{wrong}"
    );
    let noentry = row(&json, "noentry", &dir)["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(noentry.contains("missing entry symbol"), "{noentry}");
    let junk = row(&json, "junk", &dir)["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(junk.contains("not a shared library"), "{junk}");
    for r in json["plugins"].as_array().unwrap() {
        assert!(
            !r["status"].as_str().unwrap().contains('\n'),
            "multi-line status: {r}"
        );
    }

    // The table says the same, in one line per plugin.
    let out = env
        .cmd()
        .args(["plugins", "list"])
        .env("CLEMHOST_ALLOW_CWD_PLUGINS", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = stdout(&out);
    let line = table
        .lines()
        .find(|l| l.starts_with("wrongabi") && l.contains(dir.to_str().unwrap()))
        .expect("a wrongabi line");
    assert!(line.contains("ABI mismatch"), "{line}");
}

#[test]
fn a_plugin_that_panics_while_loading_does_not_take_the_listing_down() {
    let env = TestEnv::new();
    let dir = env.path().join("plugins");
    copy_plugin("misbehave", &dir);
    copy_plugin("echo", &dir);
    let out = env
        .cmd()
        .args(["plugins", "list", "--json"])
        .env("CLEMHOST_MISBEHAVE_MANIFEST", "panic")
        .env("CLEMHOST_ALLOW_CWD_PLUGINS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = row(&json, "misbehave", &dir)["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(status.contains("panicked while loading"), "{status}");
    assert_eq!(row(&json, "echo", &dir)["status"], "ok");
}

#[test]
fn plugin_dir_flag_wins_and_shadows_later_files_of_the_same_name() {
    let env = TestEnv::new();
    let first = env.path().join("mine");
    copy_plugin("echo", &first);
    copy_plugin("echo", &env.path().join("plugins"));
    let json = list_json(&env, &["--plugin-dir", first.to_str().unwrap()]);
    assert!(row(&json, "echo", &first)["shadowed_by"].is_null());
    let later = row(&json, "echo", &env.path().join("plugins"));
    assert_eq!(
        later["shadowed_by"].as_str().unwrap(),
        first.join("libecho_api.so").to_str().unwrap()
    );
    let search: Vec<&str> = json["search_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(search[0], first.to_str().unwrap());

    // $CLEMHOST_PLUGIN_PATH comes after --plugin-dir and before ./plugins.
    let env_dir = env.path().join("from-env");
    copy_plugin("echo", &env_dir);
    let out = env
        .cmd()
        .args(["plugins", "list", "--json"])
        .env("CLEMHOST_PLUGIN_PATH", &env_dir)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(row(&json, "echo", &env_dir)["shadowed_by"].is_null());
    assert!(!row(&json, "echo", &env.path().join("plugins"))["shadowed_by"].is_null());
}

#[cfg(unix)]
#[test]
fn plugins_that_others_can_write_to_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let dir = env.path().join("plugins");
    copy_plugin("echo", &dir);
    let file = dir.join("libecho_api.so");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let json = list_json(&env, &[]);
    let status = row(&json, "echo", &dir)["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        status.starts_with("refused") && status.contains("chmod o-w"),
        "{status}"
    );

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let json = list_json(&env, &[]);
    let status = row(&json, "echo", &dir)["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(status.contains("its directory"), "{status}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn plugins_new_refuses_bad_names_and_existing_folders() {
    let env = TestEnv::new();
    let out = env.run(&["plugins", "new", "My-Backend"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("lowercase"), "{}", stderr(&out));
    std::fs::create_dir(env.path().join("taken_api")).unwrap();
    let out = env.run(&["plugins", "new", "taken"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

/// The whole promise of the plugin system: a crate made by `plugins new`,
/// built on its own outside the workspace and dropped into ./plugins, is
/// listed and serves a registry entry, without rebuilding the host.
#[test]
fn a_scaffolded_plugin_builds_on_its_own_and_is_picked_up() {
    let env = TestEnv::new();
    let out = env.run(&["plugins", "new", "mybackend", "--path", "src"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let krate = env.path().join("src/mybackend_api");
    assert!(krate.join("README.md").exists() && krate.join("src/lib.rs").exists());

    // Its own target dir (kept between runs under the workspace's target).
    let target = plugin_build_dir().parent().unwrap().join("scaffold-test");
    let build = |offline: bool| {
        let mut c = std::process::Command::new(env!("CARGO"));
        c.args(["build", "--release", "--quiet"])
            .current_dir(&krate)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS");
        if offline {
            c.arg("--offline");
        }
        c.output().expect("cargo runs")
    };
    let mut out = build(true);
    if !out.status.success() {
        out = build(false);
    }
    assert!(
        out.status.success(),
        "the scaffolded plugin does not build: {}",
        stderr(&out)
    );
    let so = target.join("release/libmybackend_api.so");
    std::fs::create_dir_all(env.path().join("plugins")).unwrap();
    std::fs::copy(&so, env.path().join("plugins/libmybackend_api.so")).unwrap();

    let json = list_json(&env, &[]);
    let r = row(&json, "mybackend", &env.path().join("plugins"));
    assert_eq!(r["status"], "ok");
    assert_eq!(r["backends"], serde_json::json!(["mybackend"]));

    env.write(
        "model_registry.json",
        r#"[{"model_name": "my-model", "backend": "mybackend",
             "model_config": {"reply": "GREET: Hello and welcome!"}}]"#,
    );
    // A plugin under development in ./plugins is opened when asked for.
    let out = env
        .cmd()
        .args(["run", "-g", "hellogame", "-m", "my-model", "-e", "greet_en"])
        .arg("--no-default-registry")
        .env("CLEMHOST_ALLOW_CWD_PLUGINS", "1")
        .output()
        .expect("clemhost runs");
    assert!(
        out.status.success(),
        "run with the scaffolded plugin failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let requests = std::fs::read_to_string(
        env.path()
            .join("results/my-model/hellogame/greet_en/instance_00000/player_1.requests.json"),
    )
    .expect("the plugin's calls are recorded");
    assert!(requests.contains("my-model"), "{requests}");
}

/// Issue 12, item 10: files in ./plugins (which may come with a cloned
/// repository) are not opened by the listings, and one that shadows an
/// installed plugin is refused by `run`, each saying how to allow it.
#[test]
fn plugins_in_the_working_directory_are_not_run_unless_allowed() {
    let env = TestEnv::new();
    let dir = env.path().join("plugins");
    copy_plugin("misbehave", &dir);
    copy_plugin("echo", &dir);
    env.write(
        "model_registry.json",
        r#"[{"model_name": "e", "backend": "echo", "model_config": {"reply": "GREET: hi"}}]"#,
    );
    // The manifest of misbehave panics when asked: a listing that opened it would say so.
    let out = env
        .cmd()
        .args(["plugins", "list", "--json"])
        .env("CLEMHOST_MISBEHAVE_MANIFEST", "panic")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in ["misbehave", "echo"] {
        let status = row(&json, name, &dir)["status"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            status.starts_with("not opened") && status.contains("CLEMHOST_ALLOW_CWD_PLUGINS=1"),
            "{name}: {status}"
        );
    }
    // The installed echo (next to the binary) is still listed and read.
    let installed = row(&json, "echo", &plugin_build_dir());
    assert_eq!(installed["status"], "ok");

    // run: the ./plugins echo shadows the installed one and is refused.
    let out = env.run(&["run", "-g", "hellogame", "-m", "e", "-e", "greet_en"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refusing plugin") && err.contains("shadows the installed"),
        "{err}"
    );
    assert!(err.contains("CLEMHOST_ALLOW_CWD_PLUGINS=1"), "{err}");
    assert!(!env.path().join("results").exists(), "nothing played");
    // Asked for, it is used.
    let out = env
        .cmd()
        .args(["run", "-g", "hellogame", "-m", "e", "-e", "greet_en"])
        .env("CLEMHOST_ALLOW_CWD_PLUGINS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // So is naming the directory.
    let out = env.run(&[
        "--plugin-dir",
        "plugins",
        "run",
        "-g",
        "hellogame",
        "-m",
        "e",
        "-e",
        "greet_en",
        "-r",
        "again",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A relative entry of CLEMHOST_PLUGIN_PATH (set once in a profile, it
    // names a folder in every repository) does not count as naming it.
    let out = env
        .cmd()
        .args(["run", "-g", "hellogame", "-m", "e", "-e", "greet_en"])
        .args(["-r", "relative"])
        .env("CLEMHOST_PLUGIN_PATH", "plugins")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refusing plugin"), "{err}");
    assert!(
        err.contains("CLEMHOST_PLUGIN_PATH entry 'plugins' is relative"),
        "{err}"
    );
    // Its absolute path does.
    let out = env
        .cmd()
        .args(["run", "-g", "hellogame", "-m", "e", "-e", "greet_en"])
        .args(["-r", "absolute"])
        .env("CLEMHOST_PLUGIN_PATH", &dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A registry in the working directory (a cloned repository) routes a
/// shipped model name to a backend that only ./plugins serves: the file
/// shadows nothing, and is still not opened unless asked for.
#[test]
fn a_working_directory_registry_cannot_route_a_model_to_a_plugin_of_the_working_directory() {
    let env = TestEnv::new();
    let dir = env.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(built_plugin("echo"), dir.join("libzzz_api.so")).unwrap();
    env.write(
        "model_registry.json",
        r#"[{"model_name": "gpt-4o", "backend": "zzz", "model_config": {"reply": "GREET: hi"}}]"#,
    );
    let out = env.run(&["run", "-g", "hellogame", "-m", "gpt-4o", "-e", "greet_en"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refusing plugin") && err.contains("libzzz_api.so"),
        "{err}"
    );
    assert!(
        err.contains("CLEMHOST_ALLOW_CWD_PLUGINS=1") && err.contains("--plugin-dir plugins"),
        "{err}"
    );
    assert!(!env.path().join("results").exists(), "nothing played");
    // The listings leave it unopened too, saying how to allow it.
    let out = env.run(&["plugins", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = row(&json, "zzz", &dir)["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(status.starts_with("not opened"), "{status}");
    let out = env.run(&["models", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let model = json["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model_name"] == "gpt-4o" && m["backend"] == "zzz")
        .unwrap_or_else(|| panic!("no gpt-4o row: {json:#}"));
    assert_eq!(model["plugin_read"], false, "{model}");
}
